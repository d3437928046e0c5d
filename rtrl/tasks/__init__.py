"""Supervised diagnostic tasks (docs/DESIGN.md §6): the copy task of Irie et al. (2024), Sec. 4.1."""
