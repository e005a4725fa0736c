"""The lowest layer: geometry and world coordinates, image reading and atomic writing, volumes and
masks, acquisitions and their slice profiles, the acquisition forward model, interpolation onto
a grid, image statistics and the compute device.  numpy, nibabel, scipy (torch where a function
needs it); imports nothing else from the package."""
