"""The PASS/FAIL bookkeeping the Python client scripts share: each check runs, failures are
reported on one line instead of raised, and the script ends with `N passed, M failed`."""
import grpc
import numpy as np


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def run(self, name, fn):
        try:
            detail = fn()
        except Exception as e:  # noqa: BLE001 - any failure is reported, not raised
            self.failed += 1
            msg = f"{e.code()}: {e.details()}" if isinstance(e, grpc.RpcError) else f"{type(e).__name__}: {e}"
            print(f"FAIL {name}: {' '.join(msg.split())}", flush=True)  # keep it to one line
        else:
            self.passed += 1
            print(f"PASS {name}" + (f" ({detail})" if detail else ""), flush=True)

    def summary(self):
        """Prints the closing line; returns the exit code."""
        print(f"{self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def close_to(got, want, what, atol=1e-5):
    """Raises unless `got` is float32 of `want`'s shape within `atol`; returns the worst diff."""
    got = np.asarray(got)
    expect(got.dtype == np.float32 and got.shape == want.shape, f"{what}: got {got.dtype} {got.shape}, want float32 {want.shape}")
    diff = float(np.max(np.abs(got - want)))
    expect(diff <= atol, f"{what}: max abs diff {diff:.3g} > {atol}")
    return diff
