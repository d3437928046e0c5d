"""What runs and benchmarks record: files written atomically, metrics.csv (+ TensorBoard), plots,
the machine a number was measured on, and sections of the docs/ reports."""
