"""Dataset construction: readers, validation, cleaning, de-duplication, selection,
mixing, splitting and reports, as small blocks with one signature (see ``block.py``)."""
