"""One subject from files: BIDS inputs, anatomical steps (bias correction, brain mask,
registration), the reconstruction with every method, its outputs, sidecars and methods text,
and the registration checks.  Imports the layers below it; never nipype workflows or the CLI."""
