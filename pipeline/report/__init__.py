"""What a build means, for a person and for CI: findings with severities and budget gates (findings), the
self-contained report.html (page), and a firmware image's real sizes against the fit estimate (elf)."""
