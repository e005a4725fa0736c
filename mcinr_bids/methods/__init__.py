"""The reconstruction methods, on arrays and world coordinates (torch + numpy; no nipype, no
BIDS): :mod:`.inr` (the default, the subject-specific implicit neural representation and its
post-processing), :mod:`.jtv` (joint total variation) and :mod:`.unpaired` (the cohort-trained
network).  They import only :mod:`mcinr_bids.core`."""
