"""Helpers of the BIDS App: templates, BIDS inputs and derivative metadata."""
