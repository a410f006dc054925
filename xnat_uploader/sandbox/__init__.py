"""A local XNAT-compatible server for the demo mode, the tests and the benchmarks.

It behaves as ``xnat-api.md`` describes XNAT (status codes, body formats, quirks), so that a client
that works against it works against XNAT. Start it with ``xnat-uploader sandbox`` or
:class:`~xnat_uploader.sandbox.server.SandboxServer`. Modules:

``server``      SandboxServer: start/stop, users, projects, faults, inventory (the public face)
``app``         request handling: faults, then authentication, then the route table; request log
``httpd``       HTTP/1.1 keep-alive server, TCP_NODELAY, streamed/chunked bodies (framing checked), router
``responses``   the Response object and XNAT-like error pages (Restlet, Tomcat)
``auth``        users, JSESSIONID sessions (idle expiry, session cap, CSRF), Basic auth, 401/302
``faults``      fault spec parsing and injection (500s, dropped bodies, slow answers, expiring sessions)
``store``       in-memory metadata + files on disk in XNAT's layout; the inventory
``dicomio``     DICOM header reading (pydicom) and XNAT's default routing rules
``sessions``    receive into prearchive sessions (find-or-create rules), build, archive
``merge``       archiving into an existing session: XNAT's switches per entry point, its checks, the merge
``importer``    ``/data/services/import``: in-body/multipart/chunked bodies, handler choice
``handlers``    gradual-DICOM, DICOM-zip, SI, inbox handlers; ``xar``: the XAR handler
``inbox``       the inbox import's background requests and ``/xapi/dicom`` (their status)
``multipart``   a streaming multipart/form-data reader
``prearchive``  prearchive listings, session GET/DELETE/actions, the auto-build timer
``dicom_scp``   the DICOM C-STORE/C-ECHO receiver (pynetdicom): files each instance as gradual-DICOM does
``batch``       ``/data/services/prearchive/{move,delete,rebuild}``
``archive``     ``/data/services/archive`` and the Direct-Archive XAPI
``listings``    projects, subjects, experiments, scans (tables and single objects)
``resources``   resources and files on projects, subjects, sessions, scans
``config``      anonymization script configuration endpoints
``site``        JSESSION, auth, buildInfo, users, schemas, search elements, dicomscp
``tables``, ``xmldoc``, ``schema``  XNAT's table, object and schema representations
``synthetic``   synthetic DICOM corpora (no patient data)
"""
