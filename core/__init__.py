"""Synthloop's core: the product's logic, importable and testable without Streamlit or SQL."""
