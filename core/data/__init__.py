"""Data in and out: import (read, plan, write), export, the one CSV writer (tables), held-out splits, the item
table and text normalisation."""
