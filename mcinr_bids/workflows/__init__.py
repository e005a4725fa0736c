"""Nipype workflow factories (``init_*_wf``); no math here."""
