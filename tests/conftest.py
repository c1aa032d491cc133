"""Test set-up: put the repository root on sys.path so tests import the flat top-level modules."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
