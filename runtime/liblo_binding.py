"""The one place the liblo binding is chosen (the link, the OSC socket and runtime.doctor use this one).

PyPI's pyliblo3 on the workstation and CI (x86_64 wheels), else Debian's python3-liblo (module `liblo`,
0.10, the same API) on the box, because PyPI has no aarch64 pyliblo3 (deploy/setup-pi.sh installs
python3-liblo there).
"""

from __future__ import annotations

try:
    import pyliblo3 as liblo
except ImportError:
    try:
        import liblo  # type: ignore[no-redef]
    except ImportError:
        raise ImportError(
            "no liblo binding for Python: install pyliblo3 (pip install pyliblo3, the workstation) or "
            "Debian's python3-liblo (apt-get install python3-liblo, the box; its venv needs "
            "--system-site-packages to see it)"
        ) from None

__all__ = ["liblo"]
