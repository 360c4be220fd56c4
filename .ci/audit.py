"""Audit a lock file for known vulnerabilities with pip-audit, and say plainly when it could not.

`pip-audit -r requirements.lock --require-hashes --disable-pip` asks a vulnerability service
about every pin. Where that service is out of reach (a sandbox that reaches only the package
index, not its JSON API or OSV), pip-audit still prints "No known vulnerabilities found" and
exits 0, having audited nothing. This wrapper reads pip-audit's JSON report instead and decides:

- a known vulnerability in any pin: exit 1, listing them;
- every pin audited, none vulnerable: exit 0;
- no service reachable (every pin skipped as "not found", or a connection error): exit 0 with a
  loud AUDIT SKIPPED notice, because the build cannot fix the network;
- anything else (some pins skipped, pip-audit failing otherwise): exit 1.

Usage: python .ci/audit.py requirements.lock
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

SERVICES = ("pypi", "osv")
UNREACHABLE_MARKERS = (
    "ConnectionError",
    "ProxyError",
    "Max retries exceeded",
    "NameResolutionError",
    "Timeout",
    "ServiceError",
)


@dataclass(frozen=True)
class Audit:
    service: str
    audited: list[str]
    skipped: list[str]
    vulnerable: list[str]
    error: str | None = None

    @property
    def unreachable(self) -> bool:
        if self.error is not None:
            return any(marker in self.error for marker in UNREACHABLE_MARKERS)
        return not self.audited and bool(self.skipped)


def run_audit(lock: str, *, service: str) -> Audit:
    command = [
        *(sys.executable, "-m", "pip_audit"),
        *("-r", lock, "--require-hashes", "--disable-pip"),
        *("--vulnerability-service", service, "--progress-spinner", "off", "--format", "json"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        return Audit(service, [], [], [], error=tail or f"exit status {done.returncode}")
    return summarize(service, report["dependencies"])


def summarize(service: str, dependencies: list[dict[str, Any]]) -> Audit:
    audited, skipped, vulnerable = [], [], []
    for dep in dependencies:
        pin = f"{dep['name']}=={dep.get('version', '?')}"
        if "skip_reason" in dep:
            skipped.append(f"{dep['name']}: {dep['skip_reason']}")
            continue
        audited.append(pin)
        for vuln in dep.get("vulns") or []:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
            vulnerable.append(f"{pin}: {vuln['id']} (fixed in: {fixes})")
    return Audit(service, audited, skipped, vulnerable)


def main(lock: str) -> int:
    audits = []
    for service in SERVICES:
        audit = run_audit(lock, service=service)
        audits.append(audit)
        if not audit.unreachable:
            return verdict(lock, audit)
    print(f"AUDIT SKIPPED: no vulnerability service reachable from here; {lock} was NOT audited.")
    for audit in audits:
        reason = audit.error or f"all {len(audit.skipped)} pins skipped as not found"
        print(f"  {audit.service}: {reason.splitlines()[-1]}")
    print("  Run `python .ci/audit.py requirements.lock` where the service is reachable.")
    return 0


def verdict(lock: str, audit: Audit) -> int:
    if audit.error is not None:
        print(f"pip-audit failed ({audit.service}):\n{audit.error}", file=sys.stderr)
        return 1
    if audit.vulnerable:
        print(f"known vulnerabilities in {lock} ({audit.service}):", file=sys.stderr)
        print("\n".join(f"  {line}" for line in audit.vulnerable), file=sys.stderr)
        return 1
    if audit.skipped:
        print(f"{len(audit.skipped)} pins of {lock} could not be audited:", file=sys.stderr)
        print("\n".join(f"  {line}" for line in audit.skipped), file=sys.stderr)
        return 1
    print(f"{lock}: {len(audit.audited)} pins audited ({audit.service}), no known vulnerability")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
