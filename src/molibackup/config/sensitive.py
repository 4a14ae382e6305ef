"""What is secret, in one list, and where such values are found: configuration data and the
environment. `log` redacts whatever is registered from here (and the credentials a session
obtains, see aws.open_session)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

#: Options whose value is secret, wherever they appear in a configuration file.
SECRET_OPTIONS = frozenset({"accesskey_secret", "ping_url", "external_id"})
#: Environment variables whose value is secret.
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def url_password(value: str) -> str | None:
    """The password of a URL such as https://user:password@host, if it has one."""
    if "://" not in value or "@" not in value:
        return None
    try:
        return urllib.parse.urlsplit(value).password
    except ValueError:
        return None


def in_config(data: Any) -> list[str]:
    """The secret values of raw configuration data, whatever their type or validity: the
    secret options' values and the passwords of URLs, at any depth."""
    found: list[str] = []

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in SECRET_OPTIONS and item is not None and not isinstance(
                        item, dict | list):
                    found.append(str(item))
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)
        elif isinstance(value, str) and (password := url_password(value)):
            found.append(password)

    visit(data)
    return found


def in_environment(env: Mapping[str, str]) -> list[str]:
    return [env[name] for name in SECRET_VARIABLES if env.get(name)]
