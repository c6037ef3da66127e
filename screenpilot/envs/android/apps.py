"""Finding the app a model names ("Settings", "Chrome", "Files") among the installed ones.

Android offers no shell command that prints app labels as users see them. What it offers: the launcher
activities (``cmd package query-activities``), whose dump carries a label when the manifest spells it out
(``nonLocalizedLabel=``), and the package names. The rest comes from an alias table of common apps, which
callers can extend. A name that matches nothing is the model's mistake: the error names close matches.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from screenpilot.errors import UnsupportedActionError

LAUNCHER_QUERY = [
    "cmd",
    "package",
    "query-activities",
    "-a",
    "android.intent.action.MAIN",
    "-c",
    "android.intent.category.LAUNCHER",
]

#: Human names -> packages that provide them, most likely first.
DEFAULT_ALIASES: dict[str, tuple[str, ...]] = {
    "settings": ("com.android.settings",),
    "chrome": ("com.android.chrome",),
    "browser": ("com.android.chrome", "org.mozilla.firefox", "com.android.browser"),
    "firefox": ("org.mozilla.firefox",),
    "files": (
        "com.google.android.documentsui",
        "com.android.documentsui",
        "com.google.android.apps.nbu.files",
    ),
    "file manager": ("com.google.android.apps.nbu.files", "com.google.android.documentsui"),
    "camera": ("com.android.camera2", "com.google.android.GoogleCamera", "com.android.camera"),
    "contacts": ("com.google.android.contacts", "com.android.contacts"),
    "phone": ("com.google.android.dialer", "com.android.dialer"),
    "dialer": ("com.google.android.dialer", "com.android.dialer"),
    "messages": ("com.google.android.apps.messaging", "com.android.messaging", "com.android.mms"),
    "sms": ("com.google.android.apps.messaging", "com.android.messaging"),
    "gmail": ("com.google.android.gm",),
    "email": ("com.google.android.gm", "com.android.email"),
    "maps": ("com.google.android.apps.maps",),
    "google maps": ("com.google.android.apps.maps",),
    "youtube": ("com.google.android.youtube",),
    "photos": ("com.google.android.apps.photos",),
    "gallery": (
        "com.google.android.apps.photos",
        "com.android.gallery3d",
        "com.simplemobiletools.gallery.pro",
    ),
    "calendar": ("com.google.android.calendar", "com.android.calendar", "com.simplemobiletools.calendar.pro"),
    "clock": ("com.google.android.deskclock", "com.android.deskclock"),
    "alarm": ("com.google.android.deskclock", "com.android.deskclock"),
    "calculator": ("com.google.android.calculator", "com.android.calculator2"),
    "play store": ("com.android.vending",),
    "google play": ("com.android.vending",),
    "google": ("com.google.android.googlequicksearchbox",),
    "keep": ("com.google.android.keep",),
    "google keep": ("com.google.android.keep",),
    "drive": ("com.google.android.apps.docs",),
    "recorder": ("com.google.android.apps.recorder", "com.dimowner.audiorecorder"),
    "audio recorder": ("com.dimowner.audiorecorder", "com.google.android.apps.recorder"),
    "markor": ("net.gsantner.markor",),
    "notes": ("com.google.android.keep", "net.gsantner.markor"),
    "simple calendar pro": ("com.simplemobiletools.calendar.pro",),
    "simple gallery pro": ("com.simplemobiletools.gallery.pro",),
    "simple sms messenger": ("com.simplemobiletools.smsmessenger",),
    "vlc": ("org.videolan.vlc",),
    "retro music": ("code.name.monkey.retromusic",),
    "broccoli": ("com.flauschcode.broccoli",),
    "pro expense": ("com.arduia.expense",),
    "osmand": ("net.osmand",),
    "tasks": ("org.tasks",),
    "joplin": ("net.cozic.joplin",),
    "wikipedia": ("org.wikipedia",),
    "whatsapp": ("com.whatsapp",),
    "telegram": ("org.telegram.messenger",),
    "spotify": ("com.spotify.music",),
}


@dataclass(frozen=True)
class App:
    """A launchable app: its package, the label where the device tells it, the launcher activity if known."""

    package: str
    label: str | None = None
    activity: str | None = None

    @property
    def component(self) -> str | None:
        if self.activity is None:
            return None
        return f"{self.package}/{self.activity}"


class AppNotFoundError(UnsupportedActionError):
    """No installed app matches the name the model gave."""


def parse_launcher_activities(text: str) -> list[App]:
    """Apps from ``cmd package query-activities`` output, full (``name=``/``packageName=``/``nonLocalizedLabel=``
    per activity) or ``--brief`` (``package/activity`` per line)."""
    apps: dict[str, App] = {}
    name: str | None = None
    package: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        brief = re.fullmatch(r"([A-Za-z][\w.]*)/([\w.$]+)", line)
        if brief:
            apps.setdefault(brief[1], App(brief[1], None, brief[2]))
            continue
        if line.startswith("name="):
            name, package = line[5:], None
        elif line.startswith("packageName=") and name is not None:
            package = line[len("packageName=") :]
            apps.setdefault(package, App(package, None, name))
        elif "nonLocalizedLabel=" in line and package is not None:
            label = re.search(r"nonLocalizedLabel=(.*?)(?:\s+icon=0x|$)", line)
            if label and label[1] not in ("null", ""):
                current = apps[package]
                if current.label is None:
                    apps[package] = App(package, label[1].strip(), current.activity)
            name = package = None
    return list(apps.values())


def parse_package_list(text: str) -> list[App]:
    """Apps from ``pm list packages`` (no labels, no activities)."""
    return [App(line.strip()[8:]) for line in text.splitlines() if line.strip().startswith("package:")]


def _key(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", text.casefold())


def _tail(package: str) -> str:
    parts = [
        p for p in package.split(".") if p not in ("com", "org", "net", "android", "google", "apps", "pro")
    ]
    return parts[-1] if parts else package.rsplit(".", 1)[-1]


def resolve_app(
    name: str,
    apps: Sequence[App],
    aliases: Mapping[str, Iterable[str]] = DEFAULT_ALIASES,
) -> App:
    """The installed app ``name`` refers to: a package name, a label, an alias, or a package's last word."""
    wanted = _key(name)
    if not wanted:
        raise AppNotFoundError(
            "The app name is empty; give the app's name as shown on the phone, e.g. 'Settings'."
        )
    by_package = {a.package: a for a in apps}
    if name.strip() in by_package:
        return by_package[name.strip()]
    labelled = [a for a in apps if a.label and _key(a.label) == wanted]
    if len(labelled) >= 1:
        return labelled[0]
    alias_map = {_key(k): tuple(v) for k, v in aliases.items()}
    for package in alias_map.get(wanted, ()):
        if package in by_package:
            return by_package[package]
    tails = [a for a in apps if _key(_tail(a.package)) == wanted]
    if len(tails) == 1:
        return tails[0]
    prefix = [a for a in apps if a.label and _key(a.label).startswith(wanted)]
    if len(prefix) == 1:
        return prefix[0]

    names: dict[str, str] = {}
    for app in apps:
        if app.label:
            names[app.label] = app.package
        names.setdefault(_tail(app.package), app.package)
    for alias, packages in aliases.items():
        installed = next((p for p in packages if p in by_package), None)
        if installed:
            names.setdefault(alias.title() if alias.islower() else alias, installed)
    close = difflib.get_close_matches(name.strip().casefold(), [n.casefold() for n in names], n=4, cutoff=0.5)
    shown = [n for n in names if n.casefold() in close]
    hint = f" Close matches: {', '.join(shown)}." if shown else ""
    raise AppNotFoundError(
        f"No installed app is called {name!r}.{hint} Open one by its name as shown on the phone."
    )
