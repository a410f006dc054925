"""What a coordinator chooses about how XNAT files an upload: one place for the command line and the window.

**If the session exists** (:class:`OnExisting`). XNAT's own switch, ``overwrite``, does not mean one thing
(XNAT 1.8.11's source): a commit of a prearchive session always merges into an archived session of the same
label (``PrearcSessionResource.postActionCommit``: allowSessionMerge=true, overrideExceptions=false);
``overwrite`` on an import is read only by DICOM-zip together with ``action=commit``, gradual-DICOM ignores it;
``/data/services/archive`` of one session also always merges, and replaces files already in the archived
session only with ``overwrite`` (``append`` or ``delete``, the same there: ``Archiver.finishSingleSessionArchive``
passes it as overrideExceptions, the merge then overwrites). A merge without that refuses the whole upload
when it holds any file or instance the archived session already has, whatever the bytes ("Session already
exists with matching files." / "... with the same resources.", ``MergeSessionsA.checkForConflict``): the
upload then waits in the prearchive as CONFLICT. Nothing ever deletes scans. So the three choices are built
from what XNAT does, and the importer's ``overwrite`` is never sent:

* REFUSE: we check before sending (the plan, against the archive, the prearchive and the queue); nothing is sent;
* ADD: send and commit; XNAT merges (new scans and images added, nothing deleted or replaced). An upload that
  re-sends images of a series the archived session holds is stopped before sending
  (:mod:`core.queue.additions`), since XNAT would refuse it whole;
* REPLACE: send into the prearchive, build the session there (a build never archives by itself, a commit would
  in a project set to auto-archive), then archive it with ``overwrite=delete``. Only for the destination
  "archive": Direct-Archive and "prearchive only" have no such archiving step.

The same three choices archive a session from the Prearchive tab and ``prearchive archive`` (each with its
:attr:`OnExisting.archive_help`): REFUSE checks the archive first, ADD sends no ``overwrite``, REPLACE
``overwrite=delete`` (:func:`archive_overwrite`).

**XNAT's import parameters** (:class:`XnatParams`): ``quarantine`` and ``triggerPipelines`` are read by XNAT's
archiver (``PrearcSessionArchiver``), so they go with the request that archives (the commit, or the archive
service), never with the files; ``rename`` is read for each DICOM file (gradual-DICOM, and DICOM-zip's entries);
``Ignore-Unparsable`` by DICOM-zip. ``dest`` (:func:`parse_dest`) routes a whole import: only ``import-archive``
takes it, because the upload routes every study to its own session itself.

Choices are stored in a job's options (plain JSON values), so a resumed job sends the same. Older options
(``overwrite`` = ``""``/``none``/``append``/``delete``) are read by :func:`parse_on_existing`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

OPT_OVERWRITE = "overwrite"  # job option and settings key (its old values are still read)
OPT_QUARANTINE = "quarantine"
OPT_TRIGGER_PIPELINES = "trigger_pipelines"
OPT_RENAME = "rename"
OPT_IGNORE_UNPARSABLE = "ignore_unparsable"


class OnExisting(str, enum.Enum):
    """What to do when the session already exists; the value is what the job's options store."""

    REFUSE = "refuse"
    ADD = "add"
    REPLACE = "replace"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def help(self) -> str:
        """One line for the window (under the choice)."""
        return _HELP[self]

    @property
    def short(self) -> str:
        """A few words for the command line's help."""
        return _SHORT[self]

    @property
    def archive_help(self) -> str:
        """What XNAT does with this choice when a prearchive session is archived (the Prearchive tab's tip)."""
        return _ARCHIVE_HELP[self]

    @property
    def archive_short(self) -> str:
        """The same in a few words (``prearchive archive --overwrite``)."""
        return _ARCHIVE_SHORT[self]


_LABELS = {
    OnExisting.REFUSE: "Refuse if the session exists",
    OnExisting.ADD: "Add to the existing session",
    OnExisting.REPLACE: "Replace what is already there",
}
_HELP = {
    OnExisting.REFUSE: "Nothing is sent when a session with this label is already in the archive, the prearchive "
    "or the upload queue; you are told which one.",
    OnExisting.ADD: "XNAT adds new scans and images to the existing session; nothing there is deleted or "
    "replaced. XNAT refuses the whole upload if it holds images the session already has: choose Replace, or "
    "leave those series out.",
    OnExisting.REPLACE: "Files you send replace the same files already in the archived session; scans you do not "
    "send stay. Only with the destination Archive.",
}

_SHORT = {
    OnExisting.REFUSE: "nothing is sent if the session exists (the default)",
    OnExisting.ADD: "XNAT adds new scans and images, nothing is deleted; it refuses images the session already holds",
    OnExisting.REPLACE: "destination archive only: files sent replace the same files in the archived session, "
    "other scans stay",
}

# Archiving a prearchive session (the Prearchive tab, ``prearchive archive``): what XNAT does with each choice.
_ARCHIVE_HELP = {
    OnExisting.REFUSE: "Archived only if the archive has no session with this label: this app looks before asking "
    "XNAT, and if one is there nothing changes and you are told.",
    OnExisting.ADD: "XNAT archives it as a new session, or adds its scans and images to the archived session of "
    "the same label; nothing there is deleted or replaced. XNAT refuses (the session stays here, marked "
    "CONFLICT) if the archived session already holds any of these images, or is another study.",
    OnExisting.REPLACE: "XNAT adds its scans and images to the archived session of the same label, and images that "
    "session already holds are replaced by these; scans not in this session stay, nothing is deleted. Another "
    "study is let in too.",
}

_ARCHIVE_SHORT = {
    OnExisting.REFUSE: "archive only if no session of that label is archived (checked first; the default)",
    OnExisting.ADD: "XNAT adds to the archived session, nothing is replaced; it refuses images already there",
    OnExisting.REPLACE: "XNAT adds to the archived session and replaces the images already there; nothing is deleted",
}

# Old spellings (settings files, queued jobs, the command line's aliases) -> the choice XNAT really made of them.
_ALIASES = {"": OnExisting.REFUSE, "none": OnExisting.REFUSE, "append": OnExisting.ADD, "delete": OnExisting.REPLACE}
CLI_NAMES = tuple(c.value for c in OnExisting) + ("none", "append", "delete")


def parse_on_existing(value: object) -> OnExisting | None:
    """A choice from its stored or typed name, old names included (``none``, ``append``, ``delete``);
    ``None`` when the value means nothing (a hand-edited file)."""
    if isinstance(value, OnExisting):
        return value
    if value is None:
        return OnExisting.REFUSE
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    try:
        return OnExisting(text)
    except ValueError:
        return _ALIASES.get(text)


def replace_unavailable(destination: str, mode: str = "zip") -> str | None:
    """Why REPLACE cannot be done for this destination and transport, in plain words; ``None`` when it can."""
    if mode == "cstore":
        return "With C-STORE, XNAT's DICOM receiver files the session itself; there is no archiving step to replace in."
    if destination == "direct":
        return (
            "Direct-Archive writes straight into the archive without the prearchive step where XNAT can replace "
            "files; choose Archive."
        )
    if destination != "archive":
        return (
            "The session stays in the prearchive; XNAT replaces files only when archiving. Choose Archive, or "
            "archive it later from the prearchive with overwrite."
        )
    return None


def archive_overwrite(choice: OnExisting) -> str | None:
    """``overwrite`` for ``/data/services/archive`` of one session: none for REFUSE and ADD (XNAT merges, refusing
    files it already holds), ``delete`` for REPLACE (XNAT then overwrites them; ``append`` would do the same)."""
    return "delete" if choice is OnExisting.REPLACE else None


def on_existing_for_job(options: Mapping[str, Any], mode: str = "zip") -> OnExisting:
    """The choice a queued job runs with. A REPLACE that its destination cannot do (an old job that asked for
    ``delete`` with the prearchive as destination) runs as ADD: XNAT merged such uploads, and still does."""
    choice = parse_on_existing(options.get(OPT_OVERWRITE)) or OnExisting.REFUSE
    if choice is OnExisting.REPLACE and replace_unavailable(_destination(options), mode):
        return OnExisting.ADD
    return choice


def _destination(options: Mapping[str, Any]) -> str:
    return "direct" if options.get("direct_archive") else str(options.get("destination") or "prearchive")


# -- XNAT's import parameters ------------------------------------------------------------------------------
HELP = {
    OPT_QUARANTINE: "XNAT archives the session with the status 'quarantine' instead of 'active' (sent with the "
    "request that archives it).",
    OPT_TRIGGER_PIPELINES: "XNAT does not start the project's AutoRun pipeline after archiving the session "
    "(triggerPipelines=false; by default it starts it).",
    OPT_RENAME: "XNAT names each stored DICOM file from its header (its own naming pattern) instead of the name we "
    "send (rename=true).",
    OPT_IGNORE_UNPARSABLE: "XNAT skips files in a zip it cannot read as DICOM instead of refusing the whole zip "
    "(Ignore-Unparsable=true, XNAT 1.8.3+).",
    "dest": "Where XNAT puts the session: /archive/projects/P[/subjects/S[/experiments/E]] archives it, "
    "/prearchive/projects/P[/TIMESTAMP/FOLDER] leaves it in (or adds it to) the prearchive.",
}


@dataclass(frozen=True)
class XnatParams:
    """XNAT's import parameters a job sends; the defaults send nothing (XNAT's own defaults)."""

    quarantine: bool = False
    trigger_pipelines: bool = True
    rename: bool = False
    ignore_unparsable: bool = False

    def to_options(self) -> dict[str, bool]:
        return {
            OPT_QUARANTINE: self.quarantine,
            OPT_TRIGGER_PIPELINES: self.trigger_pipelines,
            OPT_RENAME: self.rename,
            OPT_IGNORE_UNPARSABLE: self.ignore_unparsable,
        }

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> XnatParams:
        """From a job's options; an older job without these keys sends nothing extra."""
        pipelines = options.get(OPT_TRIGGER_PIPELINES)
        return cls(
            quarantine=options.get(OPT_QUARANTINE) is True,
            trigger_pipelines=pipelines is not False,
            rename=options.get(OPT_RENAME) is True,
            ignore_unparsable=options.get(OPT_IGNORE_UNPARSABLE) is True,
        )

    @property
    def archiving(self) -> bool:
        """True when a parameter needs XNAT to archive the session in this upload to have any effect."""
        return self.quarantine or not self.trigger_pipelines

    def import_fields(self, handler: str) -> dict[str, bool | None]:
        """Keyword arguments for :class:`~xnat_uploader.core.xnat.importer.ImportOptions` of one upload request
        (``handler`` is the import handler's name: only the handlers that read a parameter get it)."""
        return {
            "rename": self.rename and handler in ("gradual-DICOM", "DICOM-zip"),
            "ignore_unparsable": True if self.ignore_unparsable and handler == "DICOM-zip" else None,
        }

    def archive_params(self) -> dict[str, str]:
        """Parameters for the request that archives (commit, ``/data/services/archive``): XNAT's archiver reads
        them there (``PrearcSessionArchiver``), and nowhere else."""
        out: dict[str, str] = {}
        if self.quarantine:
            out["quarantine"] = "true"
        if not self.trigger_pipelines:
            out["triggerPipelines"] = "false"
        return out


def upload_problems(choice: OnExisting, params: XnatParams, *, destination: str, mode: str) -> list[str]:
    """What XNAT would refuse or silently ignore in this combination, for ``upload`` and the upload form.

    ``destination``: ``prearchive``, ``archive`` or ``direct``; ``mode``: ``zip``, ``gradual`` or ``cstore``.
    """
    problems = []
    if choice is OnExisting.REPLACE:
        why = replace_unavailable(destination, mode)
        if why:
            problems.append(f"Replace is not possible here: {why}")
    if params.archiving and (destination != "archive" or mode == "cstore"):
        problems.append(
            "Quarantine and the pipeline choice take effect when XNAT archives the session during the upload: "
            "choose the destination Archive (Direct-Archive and the prearchive do not pass them on)."
        )
    if params.rename and mode == "cstore":
        problems.append("C-STORE sends no import parameters: XNAT's receiver names the files itself.")
    if params.ignore_unparsable and mode != "zip":
        problems.append("Skipping files XNAT cannot read (Ignore-Unparsable) applies to DICOM-zip uploads only.")
    return problems


# -- dest ------------------------------------------------------------------------------------------------
_DEST = (
    ("prearchive", re.compile(r"/prearchive(?:/projects/(?P<project>[^/]+)"
                              r"(?:/(?P<timestamp>[^/]+)(?:/(?P<folder>[^/]+))?)?)?")),
    ("archive", re.compile(r"/archive(?:/projects/(?P<project>[^/]+)"
                           r"(?:/subjects/(?P<subject>[^/]+))?(?:/experiments/(?P<session>[^/]+))?)?")),
)  # fmt: skip


@dataclass(frozen=True)
class Dest:
    """A parsed ``dest`` (xnat-api.md 3.11): where an import goes."""

    uri: str
    kind: str  # "archive" or "prearchive"
    project: str = ""
    subject: str = ""
    session: str = ""  # an experiment's label (or ID) in an archive dest
    timestamp: str = ""
    folder: str = ""


def parse_dest(text: str) -> Dest:
    """Read a ``dest`` in one of XNAT's forms (a ``/data`` or ``/REST`` prefix allowed); ``ValueError`` saying which
    forms exist otherwise (XNAT answers those with 400 "Parameter dest format error")."""
    path = text.strip().rstrip("/")
    for prefix in ("/data", "/REST"):
        if path.startswith(prefix + "/"):
            path = path[len(prefix) :]
    for kind, pattern in _DEST:
        match = pattern.fullmatch(path)
        if match:
            parts = {k: unquote(v) for k, v in match.groupdict().items() if v}
            return Dest(text.strip(), kind, **parts)
    raise ValueError(
        f"'{text}' is not a place XNAT knows. Use /archive/projects/P, /archive/projects/P/subjects/S/experiments/E, "
        "/prearchive/projects/P or /prearchive/projects/P/TIMESTAMP/FOLDER."
    )


def dest_problems(dest: Dest, *, handler: str, project: str, subject: str = "", session: str = "") -> list[str]:
    """Where ``dest`` and the other routing arguments disagree (the session would land elsewhere than asked),
    or the handler does not read ``dest``."""
    if handler == "XAR":
        return ["A XAR file names its own project and session; XNAT does not read a destination for it."]
    problems = []
    for what, given, named in (
        ("project", project, dest.project),
        ("subject", subject, dest.subject),
        ("session", session, dest.session),
    ):
        if given and named and given != named:
            problems.append(f"The destination names {what} {named} but {given} was given: they must agree.")
    return problems
