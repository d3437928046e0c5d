"""``python -m rtrl.cells.native`` (``make install``): build the C pass now and say which pass is in use."""
from rtrl.cells.native import _library_path, status

print(f"rtrl: {status()} ({_library_path()})")
