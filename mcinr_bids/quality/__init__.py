"""How good a reconstruction is: metrics (PSNR, SSIM, banding, MI), simulated acquisitions, the
held-out-slice QC, the paper's evaluation experiment and the digital phantom.  Imports
:mod:`mcinr_bids.core` and :mod:`mcinr_bids.methods`."""
