"""Tests of the fast kernels in earthx_sdk/kernels against their references."""
