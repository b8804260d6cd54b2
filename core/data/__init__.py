"""Data in and out: import (read, plan, write), export, held-out splits, the item table and text normalisation."""
