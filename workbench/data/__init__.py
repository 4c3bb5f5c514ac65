"""Data studio: read, detect, validate, convert, inspect, clean and split datasets."""
