"""Thin Nipype interfaces around mcinr_bids functions (no science here)."""
