from functools import lru_cache

from shared.settings import TouchlineSettings


class ConsoleSettings(TouchlineSettings):
    console_host: str = "127.0.0.1"
    console_port: int = 8000
    # The console is a client of Touchline's own public APIs, as any front-office app would be.
    console_timeline_url: str = "http://127.0.0.1:8002"
    console_segments_url: str = "http://127.0.0.1:8003"
    console_consent_url: str = "http://127.0.0.1:8004"
    console_identity_url: str = "http://127.0.0.1:8005"
    console_session_minutes: int = 8 * 60
    # Secure cookies need https; `make run` serves plain http on loopback.
    console_secure_cookies: bool = False


@lru_cache
def get_settings() -> ConsoleSettings:
    return ConsoleSettings()
