"""Tests of deploy/: flashing over a real sshd on 127.0.0.1, provisioning a Pi."""
