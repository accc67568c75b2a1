"""A tiny client for Airflow 3's REST API (token login + JSON calls), shared by tests."""

from __future__ import annotations

import json
import urllib.request

from lakehouse.platform.airflow import base_url
from lakehouse.polling import wait_for
from lakehouse.settings import Settings


class AirflowAPI:
    def __init__(self, settings: Settings):
        self.base = base_url(settings)
        body = json.dumps(
            {
                "username": settings.airflow_admin_user,
                "password": settings.airflow_admin_password.get_secret_value(),
            }
        ).encode()
        req = urllib.request.Request(
            f"{self.base}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            self.token = json.load(r)["access_token"]

    def call(self, method: str, path: str, payload: dict | None = None) -> dict:
        req = urllib.request.Request(
            f"{self.base}/api/v2{path}",
            data=json.dumps(payload).encode() if payload is not None else None,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method=method,
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)

    def get(self, path: str) -> dict:
        return self.call("GET", path)

    def wait_for(self, predicate, timeout: float, what: str, interval: float = 2.0):
        return wait_for(predicate, timeout, what, every=interval)
