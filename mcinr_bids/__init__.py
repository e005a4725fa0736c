"""mcinr-bids: subject-specific multi-contrast MRI super-resolution with implicit neural
representations (McGinnis, Shit et al., MICCAI 2023)."""

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("mcinr-bids")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
