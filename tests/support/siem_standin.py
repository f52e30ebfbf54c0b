"""A stand-in for the HTTP receivers of SIEMs, for buildwatch's integration tests.

This is NOT Elasticsearch, OpenSearch, Splunk or an OpenTelemetry Collector. None of those
can run on this machine, so this small Python 3 program (standard library only) plays
their HTTP ingest endpoints on loopback, stores what it receives in memory, and can be told
to misbehave, so the tests can check what buildwatch's exporters send and how they react.

    siem_standin.py --port-file PATH [--tls CERT KEY] [--token TOKEN] [--hec-ack]
                    [--ack-delay SECS] [--control-port-file PATH] [--stdin-eof-exit]
                    [--verbose]

It binds 127.0.0.1 port 0 and, once listening, writes the port (decimal, then a newline)
to PATH atomically (a temporary file renamed over PATH). --tls serves HTTPS (ALPN
http/1.1) with that certificate and key. --control-port-file also serves the /_control
endpoints over plain HTTP on a second loopback port, written to that file the same way.
--stdin-eof-exit makes it exit when its stdin reaches end of file (spawn it with a piped
stdin, and it goes away with the test process). SIGTERM or SIGINT: stop listening, exit 0.

Endpoints. HTTP/1.1 with keep-alive; every response has a Content-Length. A request body
may be sent with Content-Length or chunked, and gzip-compressed (Content-Encoding: gzip).

  POST|PUT /_bulk, /<index>/_bulk           Elasticsearch / OpenSearch bulk API
  POST /services/collector[/event[/1.0]]    Splunk HTTP Event Collector (HEC), JSON events
  POST /services/collector/ack              HEC indexer acknowledgement query
  GET  /services/collector/health           HEC health
  POST /v1/logs                             OTLP/HTTP logs, JSON encoding
  POST /webhook...                          generic NDJSON webhook (any path under /webhook)
  GET  /                                    Elasticsearch-like cluster information

Behaviours of the real products that it reproduces:

  Elasticsearch / OpenSearch bulk
  - Content-Type must be application/json or application/x-ndjson (or the
    application/vnd.elasticsearch+... forms), else 406 {"error": "Content-Type header [..] is
    not supported", "status": 406}.
  - The body must end with a newline, else 400 illegal_argument_exception ("The bulk request
    must be terminated by a newline [\\n]"); an empty body is 400
    action_request_validation_exception; a malformed action/metadata line, or an action that
    is none of create/index/update/delete, rejects the whole request with 400; an index
    missing from both the action and the path is 400 "index is missing". Errors have the
    Elasticsearch shape {"error": {"root_cause": [..], "type", "reason"}, "status"}.
  - Only `create` is accepted, as in a data stream: index/update/delete items fail with 400
    illegal_argument_exception ("only write ops with an op_type of create are allowed in
    data streams").
  - Documents are kept per (index, _id): creating an existing _id gives item status 409
    version_conflict_engine_exception and does not store it again. A create without _id gets
    a generated 20-character id. Invalid index names (upper case, leading -_+, characters
    such as \\ / * ? " < > | space , # :) give 400 invalid_index_name_exception; an _id over
    512 bytes gives 400; a document line that is not a JSON object gives 400
    document_parsing_exception. Item failures are per item: the response is 200 with
    "errors": true, and the other items are stored.
  - Response 200 {"took", "errors", "items": [{"create": {"_index", "_id", "_version",
    "result", "_shards", "_seq_no", "_primary_term", "status"} or {.., "status", "error"}}]},
    with the X-Elastic-Product: Elasticsearch header that official clients check.

  Splunk HEC
  - With --token: no Authorization header is 401 {"text": "Token is required", "code": 2};
    a header not of the form "Splunk <token>" is 401 {"text": "Invalid authorization",
    "code": 3}; a wrong token is 403 {"text": "Invalid token", "code": 4}, as Splunk
    documents it (403, not 401).
  - The body is a sequence of JSON objects, with or without whitespace between them. An
    empty body is 400 {"text": "No data", "code": 5}; unparsable data or a non-object is 400
    {"text": "Invalid data format", "code": 6, "invalid-event-number": N}; a missing or null
    `event` is code 12 "Event field is required", an empty-string `event` code 13 "Event
    field cannot be blank", an object-valued entry in `fields` code 15 "Error in handling
    indexed fields", a `time` that is not a number (or a numeric string) code 6. Any of these
    rejects the whole request here (nothing is stored); real Splunk may already have indexed
    the events before the invalid one.
  - Indexer acknowledgement (--hec-ack): the channel comes from the X-Splunk-Request-Channel
    header (or a `channel` query parameter); missing is 400 {"text": "Data channel is
    missing", "code": 10}, not a GUID is 400 {"text": "Invalid data channel", "code": 11}.
    Success is {"text": "Success", "code": 0, "ackId": N}, N counting from 0 per channel.
    POST /services/collector/ack {"acks": [N, ...]} answers {"acks": {"N": true|false}};
    an ackId is true only once its batch is stored and --ack-delay (default 0.3 s) has
    passed; unknown ackIds are false. Without --hec-ack the ack endpoint is 400 {"text": "ACK
    is disabled", "code": 14}. Unlike Splunk, an ackId stays true when queried again.
  - Busy/failure answers use HEC's shapes: 503 {"text": "Server is busy", "code": 9}, 500
    {"text": "Internal server error", "code": 8}.

  OTLP/HTTP (OpenTelemetry Collector)
  - Content-Type application/json only; anything else (application/x-protobuf included, which
    a real collector accepts but this stand-in cannot decode) is 415.
  - The body is an ExportLogsServiceRequest in the OTLP JSON encoding: lowerCamelCase field
    names, 64-bit integers as decimal strings (numbers accepted too), traceId/spanId as hex
    (not base64), severityNumber as integer or enum name, AnyValue with at most one of
    stringValue/boolValue/intValue/doubleValue/arrayValue/kvlistValue/bytesValue; unknown
    fields are ignored. A violation is 400 with a google.rpc.Status body {"code": 3,
    "message"}. Success is 200 {} (a collector may also send {"partialSuccess": {}});
    partial success is {"partialSuccess": {"rejectedLogRecords": "K", "errorMessage"}},
    with K as a string, as the JSON encoding writes int64.
  - Error statuses carry a google.rpc.Status body; 429 and 503 carry Retry-After.

  Webhook: each non-blank line must be a JSON object, else 400 {"error"} and nothing of the
  request is stored; success is 200 {"accepted": N}.

Record identity. For each stored record an id is extracted: bulk, the _id; HEC, looked up
in the `event` object as `id`, then `event.id` (nested {"event": {"id"}} or a dotted key),
then `metadata.uid` (OCSF; nested or dotted); OTLP, the logRecord attribute
`log.record.uid`; webhook, the HEC lookup on the line object. Ids are kept as strings.

Fault injection, queued per endpoint and consumed in order, one per request:

  POST /_control/faults {"endpoint": "bulk|hec|hec_ack|otlp|webhook", "faults": [F, ...]}
    F = {}                          no fault for this request (to let it through)
        {"status": S}               answer S with the endpoint's error body, store nothing;
                                    429 and 503 also send Retry-After: 1 ("retry_after":
                                    seconds or null overrides; "body": JSON overrides the body)
        {"item_fail": [i, ...], "status": S, "error_type": T}    bulk only: answer 200 with
                                    "errors": true; items i (0-based) get status S (default
                                    429, type es_rejected_execution_exception) and are not
                                    stored, the others are processed normally
        {"partial_reject": K, "message": M}    otlp only: store all but the last K log
                                    records; partialSuccess rejectedLogRecords "K" (a string,
                                    as int64 is in OTLP JSON; "rejected_as_number": true sends
                                    a JSON number instead, which some encoders write)
        {"hang": SECS}              read the request, sleep SECS, then answer 503 (with
                                    Retry-After) and store nothing, whether or not the client
                                    is still there
        {"close": true}             read the request, process and store it normally (the data
                                    was accepted), then close the connection without any
                                    response; {"close": "reset"} closes with a TCP reset
        {"ack_never": true}         hec or hec_ack: the next ack-tracked batch is stored and
                                    gets an ackId, which never becomes true
    Any F may have "times": N to queue it N times. "hec" faults apply to event requests,
    "hec_ack" faults to /services/collector/ack requests, except ack_never, which is taken
    by the next acknowledged event batch. A request takes its fault before anything else is
    checked (token, channel, body). Answers {"queued": N}.

Control (no token needed; over the main port, and the control port if any):

  GET  /_control/stats    {endpoint: {"requests", "faults_served", "faults_pending", "ids",
                          "unique", "duplicates", "stored", "without_id", "rejected",
                          "rejected_ids", "conflicts"}} for bulk, hec, hec_ack, otlp, webhook.
                          "ids" are the ids of the stored records in arrival order, so
                          "duplicates" (len(ids) - unique) counts records stored more than
                          once; bulk never stores an _id twice in one index, its refused
                          re-sends are counted in "conflicts" (409) and "rejected_ids".
  GET  /_control/records?endpoint=X[&meta=1]   stored records, in order: the bulk document,
                          the whole HEC event object ({"event", "time", "host", ...}), the OTLP
                          logRecord, the webhook line. With meta=1, [{"id", "record", "meta"}]
                          where meta is {"_index"}, {"channel", "ackId"}, {"resource",
                          "scope"} or {"path"}.
  GET  /_control/headers?endpoint=X   the last request's headers {"headers": {lower-case
                          name: value}, "authorization": {"present", "scheme", "matched"}}
                          (nulls before any request); the Authorization value itself is never
                          stored. "matched": whether the credentials after the scheme equal
                          --token (null without --token).
  POST /_control/reset    forget all records, counters, faults and acks.
  POST /_control/config {"ack_delay": SECS}

Any exception in a handler is printed to stderr and answered with 500; the server goes on.
"""

import argparse
import base64
import collections
import gzip
import json
import os
import re
import secrets
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

ENDPOINTS = ("bulk", "hec", "hec_ack", "otlp", "webhook")
CONFIG = {"token": None, "hec_ack": False, "ack_delay": 0.3, "verbose": False}
LOCK = threading.Lock()


class Endpoint:
    def __init__(self):
        self.requests = 0
        self.faults_served = 0
        self.faults = collections.deque()
        self.ids = []
        self.records = []  # {"id", "record", "meta"}
        self.without_id = 0
        self.rejected_ids = []
        self.rejected = 0
        self.conflicts = 0
        self.last_headers = None
        self.counted = 0

    def store(self, rid, record, meta):
        self.records.append({"id": rid, "record": record, "meta": meta})
        if rid is None:
            self.without_id += 1
        else:
            self.ids.append(rid)

    def reject(self, rid):
        self.rejected += 1
        if rid is not None:
            self.rejected_ids.append(rid)

    def stats(self):
        unique = len(set(self.ids))
        return {
            "counted": self.counted,
            "requests": self.requests,
            "faults_served": self.faults_served,
            "faults_pending": len(self.faults),
            "ids": list(self.ids),
            "unique": unique,
            "duplicates": len(self.ids) - unique,
            "stored": len(self.records),
            "without_id": self.without_id,
            "rejected": self.rejected,
            "rejected_ids": list(self.rejected_ids),
            "conflicts": self.conflicts,
        }


STATE = {}


def reset_state():
    STATE.clear()
    STATE["eps"] = {name: Endpoint() for name in ENDPOINTS}
    STATE["bulk_docs"] = set()  # (index, _id)
    STATE["index_uuids"] = {}
    STATE["seq_no"] = 0
    STATE["channels"] = {}  # channel -> {"next": int, "acks": {ackId: ready_at or None}}


reset_state()


def ep(name):
    return STATE["eps"][name]


class BadRequest(Exception):
    """A request the endpoint refuses: (status, JSON body)."""

    def __init__(self, status, body, headers=None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


# ---------------------------------------------------------------- error bodies


def es_error(status, etype, reason, **extra):
    cause = dict({"type": etype, "reason": reason}, **extra)
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def hec_error(text, code, **extra):
    return dict({"text": text, "code": code}, **extra)


def rpc_status(code, message):
    return {"code": code, "message": message}


ES_FAULT_TYPES = {
    429: "es_rejected_execution_exception",
    409: "version_conflict_engine_exception",
    400: "illegal_argument_exception",
    503: "unavailable_shards_exception",
}
HEC_FAULT_BODIES = {
    400: ("Invalid data format", 6),
    401: ("Token is required", 2),
    403: ("Invalid token", 4),
    429: ("Server is busy", 9),
    500: ("Internal server error", 8),
    503: ("Server is busy", 9),
}
GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 413: 8, 429: 8, 500: 13, 501: 12, 502: 14,
              503: 14, 504: 4}


def fault_body(name, status):
    reason = f"injected fault: status {status}"
    if name == "bulk":
        etype = ES_FAULT_TYPES.get(status, "standin_injected_fault_exception")
        return es_error(status, etype, reason)
    if name in ("hec", "hec_ack"):
        text, code = HEC_FAULT_BODIES.get(status, (reason, 8))
        return hec_error(text, code)
    if name == "otlp":
        return rpc_status(GRPC_CODES.get(status, 2), reason)
    return {"error": reason, "status": status}


# ---------------------------------------------------------------- faults


def validate_fault(name, f):
    if not isinstance(f, dict):
        raise ValueError("a fault must be a JSON object")
    kinds = [k for k in ("item_fail", "partial_reject", "hang", "close", "ack_never") if k in f]
    if len(kinds) > 1:
        raise ValueError(f"a fault has one kind, not {kinds}")
    if "status" in f and (not isinstance(f["status"], int) or not 100 <= f["status"] <= 599):
        raise ValueError("status must be an integer HTTP status")
    if "times" in f and (not isinstance(f["times"], int) or f["times"] < 1):
        raise ValueError("times must be a positive integer")
    kind = kinds[0] if kinds else None
    if kind == "item_fail":
        if name != "bulk":
            raise ValueError("item_fail is for bulk only")
        if not isinstance(f["item_fail"], list) or not all(isinstance(i, int) for i in f["item_fail"]):
            raise ValueError("item_fail must be a list of item indices")
    elif kind == "partial_reject":
        if name != "otlp":
            raise ValueError("partial_reject is for otlp only")
        if not isinstance(f["partial_reject"], int) or f["partial_reject"] < 0:
            raise ValueError("partial_reject must be a non-negative integer")
    elif kind == "hang":
        if not isinstance(f["hang"], (int, float)) or f["hang"] < 0:
            raise ValueError("hang must be a number of seconds")
    elif kind == "close":
        if f["close"] not in (True, "reset"):
            raise ValueError('close must be true or "reset"')
    elif kind == "ack_never":
        if name not in ("hec", "hec_ack") or f["ack_never"] is not True:
            raise ValueError("ack_never (true) is for hec or hec_ack only")
    if kind in ("hang", "close", "ack_never", "partial_reject") and "status" in f:
        raise ValueError(f"{kind} takes no status")
    f = dict(f)
    f["kind"] = kind or ("status" if "status" in f else "none")
    return f


def take_fault(name):
    """Pops the next fault for a request on endpoint `name` (LOCK held)."""
    q = ep(name).faults
    if name == "hec_ack":
        for i, f in enumerate(q):
            if f["kind"] != "ack_never":
                del q[i]
                break
        else:
            return None
    elif q:
        f = q.popleft()
    else:
        return None
    if f["kind"] == "none":
        return None
    ep(name).faults_served += 1
    return f


def take_ack_never():
    """Takes the first queued ack_never fault of hec_ack, if any (LOCK held)."""
    q = ep("hec_ack").faults
    for i, f in enumerate(q):
        if f["kind"] == "ack_never":
            del q[i]
            ep("hec_ack").faults_served += 1
            return True
    return False


# ---------------------------------------------------------------- helpers


def scalar_id(v):
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, str):
        return v if v != "" else None
    if isinstance(v, (int, float)):
        return json.dumps(v)
    return None


def lookup_id(obj):
    """The record id of an event object: id, event.id, metadata.uid (nested or dotted)."""
    if not isinstance(obj, dict):
        return None
    candidates = [obj.get("id")]
    if isinstance(obj.get("event"), dict):
        candidates.append(obj["event"].get("id"))
    candidates.append(obj.get("event.id"))
    if isinstance(obj.get("metadata"), dict):
        candidates.append(obj["metadata"].get("uid"))
    candidates.append(obj.get("metadata.uid"))
    for c in candidates:
        rid = scalar_id(c)
        if rid is not None:
            return rid
    return None


def media_type(headers):
    return (headers.get("Content-Type") or "").split(";")[0].strip().lower()


def is_guid(s):
    if not re.fullmatch(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", s or ""):
        return False
    try:
        uuid.UUID(s)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- bulk


BAD_INDEX_CHARS = set('\\/*?"<>| ,#:')


def index_error(index):
    if index != index.lower():
        return "must be lowercase"
    if index[:1] in ("-", "_", "+"):
        return "must not start with '_', '-', or '+'"
    if index in (".", ".."):
        return "must not be '.' or '..'"
    if any(c in BAD_INDEX_CHARS for c in index):
        return "must not contain any of \\ / * ? \" < > | , # : or a space"
    if len(index.encode()) > 255:
        return "index name is too long"
    return None


def handle_bulk(path_index, body, fault):
    if media_type(HEADERS_TL.headers) not in (
        "application/json", "application/x-ndjson",
        "application/vnd.elasticsearch+json", "application/vnd.elasticsearch+x-ndjson",
    ):
        ct = HEADERS_TL.headers.get("Content-Type")
        msg = "Content-Type header is missing" if ct is None else f"Content-Type header [{ct}] is not supported"
        raise BadRequest(406, {"error": msg, "status": 406})
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(400, es_error(400, "illegal_argument_exception", "the bulk body is not UTF-8"))
    if not text.strip():
        raise BadRequest(400, es_error(400, "action_request_validation_exception",
                                       "Validation Failed: 1: no requests added;"))
    if not text.endswith("\n"):
        raise BadRequest(400, es_error(400, "illegal_argument_exception",
                                       "The bulk request must be terminated by a newline [\\n]"))
    lines = text.split("\n")[:-1]
    ops, i = [], 0
    while i < len(lines):
        line_no = i + 1
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        try:
            action = json.loads(line)
        except ValueError as e:
            raise BadRequest(400, es_error(400, "x_content_parse_exception",
                                           f"[{line_no}:1] Malformed action/metadata line [{line_no}]: {e}"))
        if not isinstance(action, dict) or len(action) != 1:
            raise BadRequest(400, es_error(400, "illegal_argument_exception",
                                           f"Malformed action/metadata line [{line_no}], expected START_OBJECT"
                                           " with exactly one action"))
        (verb, meta), = action.items()
        if verb not in ("create", "index", "update", "delete"):
            raise BadRequest(400, es_error(400, "illegal_argument_exception",
                                           f"Malformed action/metadata line [{line_no}], expected one of "
                                           f"[create, delete, index, update] but found [{verb}]"))
        if not isinstance(meta, dict):
            raise BadRequest(400, es_error(400, "illegal_argument_exception",
                                           f"Malformed action/metadata line [{line_no}], expected START_OBJECT"))
        index = meta.get("_index", path_index)
        if not isinstance(index, str) or not index:
            raise BadRequest(400, es_error(400, "action_request_validation_exception",
                                           "Validation Failed: 1: index is missing;"))
        doc_line = None
        if verb != "delete":
            if i >= len(lines):
                raise BadRequest(400, es_error(400, "illegal_argument_exception",
                                               f"The bulk request must be terminated by a newline [\\n]"
                                               f" (no source after line [{line_no}])"))
            doc_line = lines[i]
            i += 1
        ops.append((verb, meta, index, doc_line))
    if not ops:
        raise BadRequest(400, es_error(400, "action_request_validation_exception",
                                       "Validation Failed: 1: no requests added;"))

    fail_at, fail_status, fail_type = set(), 429, None
    if fault and fault["kind"] == "item_fail":
        fail_at = set(fault["item_fail"])
        fail_status = fault.get("status", 429)
        fail_type = fault.get("error_type") or ES_FAULT_TYPES.get(fail_status, "standin_injected_fault_exception")

    items = []
    e = ep("bulk")
    with LOCK:
        for n, (verb, meta, index, doc_line) in enumerate(ops):
            raw_id = meta.get("_id")
            doc_id = raw_id if isinstance(raw_id, str) else scalar_id(raw_id)
            item = {"_index": index, "_id": doc_id}
            uuid_ = STATE["index_uuids"].setdefault(index, secrets.token_urlsafe(16)[:22])
            error = None
            status = 201
            if n in fail_at:
                status = fail_status
                error = {"type": fail_type,
                         "reason": f"rejected execution of coordinating operation (injected fault, item {n})"}
            elif verb != "create":
                status = 400
                error = {"type": "illegal_argument_exception",
                         "reason": "only write ops with an op_type of create are allowed in data streams"}
            elif index_error(index):
                status = 400
                error = {"type": "invalid_index_name_exception",
                         "reason": f"Invalid index name [{index}], {index_error(index)}",
                         "index_uuid": "_na_", "index": index}
            elif doc_id is not None and len(doc_id.encode()) > 512:
                status = 400
                error = {"type": "illegal_argument_exception",
                         "reason": f"id [{doc_id[:40]}...] is too long, must be no longer than 512 bytes"
                                   f" but was: {len(doc_id.encode())}"}
            else:
                try:
                    doc = json.loads(doc_line)
                except ValueError as exc:
                    doc = exc
                if not isinstance(doc, dict):
                    status = 400
                    error = {"type": "document_parsing_exception",
                             "reason": f"[1:1] failed to parse: the source is not a JSON object ({doc})"}
                else:
                    if doc_id is None:
                        doc_id = secrets.token_urlsafe(15)
                        item["_id"] = doc_id
                    if (index, doc_id) in STATE["bulk_docs"]:
                        status = 409
                        e.conflicts += 1
                        error = {"type": "version_conflict_engine_exception",
                                 "reason": f"[{doc_id}]: version conflict, document already exists"
                                           " (current version [1])",
                                 "index_uuid": uuid_, "shard": "0", "index": index}
                    else:
                        STATE["bulk_docs"].add((index, doc_id))
                        e.store(doc_id, doc, {"_index": index})
                        STATE["seq_no"] += 1
                        item.update({"_version": 1, "result": "created",
                                     "_shards": {"total": 1, "successful": 1, "failed": 0},
                                     "_seq_no": STATE["seq_no"] - 1, "_primary_term": 1})
            if error is not None:
                e.reject(doc_id)
                item["error"] = error
            item["status"] = status
            items.append({verb: item})
    errors = any("error" in next(iter(it.values())) for it in items)
    return 200, {"took": 1, "errors": errors, "items": items}, {}


# ---------------------------------------------------------------- HEC


def hec_auth():
    token = CONFIG["token"]
    if token is None:
        return
    auth = HEADERS_TL.headers.get("Authorization")
    if auth is None:
        raise BadRequest(401, hec_error("Token is required", 2))
    scheme, _, cred = auth.strip().partition(" ")
    if scheme.lower() != "splunk" or not cred.strip():
        raise BadRequest(401, hec_error("Invalid authorization", 3))
    if cred.strip() != token:
        raise BadRequest(403, hec_error("Invalid token", 4))


def hec_channel(query, required):
    channel = HEADERS_TL.headers.get("X-Splunk-Request-Channel")
    if channel is None:
        channel = (query.get("channel") or [None])[0]
    if channel is None:
        if required:
            raise BadRequest(400, hec_error("Data channel is missing", 10))
        return None
    if not is_guid(channel.strip()):
        raise BadRequest(400, hec_error("Invalid data channel", 11))
    return channel.strip().lower()


def parse_hec_events(body):
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(400, hec_error("Invalid data format", 6, **{"invalid-event-number": 0}))
    if not text.strip():
        raise BadRequest(400, hec_error("No data", 5))
    dec, pos, events = json.JSONDecoder(), 0, []
    ws = re.compile(r"\s*")
    while True:
        pos = ws.match(text, pos).end()
        if pos >= len(text):
            break
        n = len(events)
        try:
            obj, pos = dec.raw_decode(text, pos)
        except ValueError:
            raise BadRequest(400, hec_error("Invalid data format", 6, **{"invalid-event-number": n}))
        if not isinstance(obj, dict):
            raise BadRequest(400, hec_error("Invalid data format", 6, **{"invalid-event-number": n}))
        if obj.get("event") is None:
            raise BadRequest(400, hec_error("Event field is required", 12, **{"invalid-event-number": n}))
        if obj["event"] == "":
            raise BadRequest(400, hec_error("Event field cannot be blank", 13, **{"invalid-event-number": n}))
        fields = obj.get("fields")
        if fields is not None and (not isinstance(fields, dict)
                                   or any(isinstance(v, dict) for v in fields.values())):
            raise BadRequest(400, hec_error("Error in handling indexed fields", 15, **{"invalid-event-number": n}))
        t = obj.get("time")
        if t is not None:
            ok = isinstance(t, (int, float)) and not isinstance(t, bool)
            if isinstance(t, str):
                try:
                    float(t)
                    ok = True
                except ValueError:
                    ok = False
            if not ok:
                raise BadRequest(400, hec_error("Invalid data format", 6, **{"invalid-event-number": n}))
        events.append(obj)
    return events


def handle_hec(query, body, fault):
    hec_auth()
    channel = hec_channel(query, CONFIG["hec_ack"])
    events = parse_hec_events(body)
    e = ep("hec")
    with LOCK:
        ack_id = None
        if CONFIG["hec_ack"]:
            never = (fault is not None and fault["kind"] == "ack_never") or take_ack_never()
            ch = STATE["channels"].setdefault(channel, {"next": 0, "acks": {}})
            ack_id = ch["next"]
            ch["next"] += 1
            ch["acks"][ack_id] = None if never else time.monotonic() + CONFIG["ack_delay"]
        for obj in events:
            e.store(lookup_id(obj.get("event")), obj, {"channel": channel, "ackId": ack_id})
    resp = {"text": "Success", "code": 0}
    if ack_id is not None:
        resp["ackId"] = ack_id
    return 200, resp, {}


def handle_hec_ack(query, body, fault):
    if not CONFIG["hec_ack"]:
        raise BadRequest(400, hec_error("ACK is disabled", 14))
    hec_auth()
    channel = hec_channel(query, True)
    try:
        req = json.loads(body.decode("utf-8"))
        acks = req["acks"]
        if not isinstance(acks, list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in acks):
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise BadRequest(400, hec_error("Invalid data format", 6))
    now = time.monotonic()
    out = {}
    with LOCK:
        known = STATE["channels"].get(channel, {"acks": {}})["acks"]
        for a in acks:
            ready = known.get(a)
            out[str(a)] = ready is not None and ready <= now
    return 200, {"acks": out}, {}


# ---------------------------------------------------------------- OTLP


ANY_KINDS = ("stringValue", "boolValue", "intValue", "doubleValue", "arrayValue", "kvlistValue", "bytesValue")
INT_RE = re.compile(r"-?\d+")
UINT_RE = re.compile(r"\d+")


class OtlpInvalid(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise OtlpInvalid(msg)


def check_int(v, where, unsigned=False):
    if isinstance(v, bool):
        raise OtlpInvalid(f"{where}: not an integer")
    if isinstance(v, int):
        check(not unsigned or v >= 0, f"{where}: negative")
        return
    check(isinstance(v, str) and (UINT_RE if unsigned else INT_RE).fullmatch(v), f"{where}: not an integer ({v!r})")


def check_any(v, where):
    check(isinstance(v, dict), f"{where}: AnyValue must be an object")
    kinds = [k for k in ANY_KINDS if k in v]
    check(len(kinds) <= 1, f"{where}: AnyValue has more than one value {kinds}")
    if not kinds:
        return
    k = kinds[0]
    x = v[k]
    if k == "stringValue":
        check(isinstance(x, str), f"{where}.stringValue: not a string")
    elif k == "boolValue":
        check(isinstance(x, bool), f"{where}.boolValue: not a boolean")
    elif k == "intValue":
        check_int(x, f"{where}.intValue")
    elif k == "doubleValue":
        check((isinstance(x, (int, float)) and not isinstance(x, bool))
              or x in ("NaN", "Infinity", "-Infinity")
              or (isinstance(x, str) and re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", x)),
              f"{where}.doubleValue: not a number")
    elif k == "bytesValue":
        try:
            base64.b64decode(x, validate=True)
        except (ValueError, TypeError):
            raise OtlpInvalid(f"{where}.bytesValue: not base64")
    elif k == "arrayValue":
        check(isinstance(x, dict), f"{where}.arrayValue: not an object")
        vals = x.get("values", [])
        check(isinstance(vals, list), f"{where}.arrayValue.values: not a list")
        for n, item in enumerate(vals):
            check_any(item, f"{where}.arrayValue.values[{n}]")
    elif k == "kvlistValue":
        check(isinstance(x, dict), f"{where}.kvlistValue: not an object")
        check_attrs(x.get("values", []), f"{where}.kvlistValue.values")


def check_attrs(attrs, where):
    check(isinstance(attrs, list), f"{where}: not a list")
    for n, kv in enumerate(attrs):
        check(isinstance(kv, dict), f"{where}[{n}]: KeyValue must be an object")
        check(isinstance(kv.get("key", ""), str), f"{where}[{n}].key: not a string")
        if "value" in kv:
            check_any(kv["value"], f"{where}[{n}].value")


def check_hex(v, n, where):
    check(isinstance(v, str) and (v == "" or re.fullmatch(r"[0-9a-fA-F]{%d}" % n, v)),
          f"{where}: must be {n} hex digits (OTLP/JSON encodes ids as hex, not base64)")


def check_log_record(r, where):
    check(isinstance(r, dict), f"{where}: LogRecord must be an object")
    for f in ("timeUnixNano", "observedTimeUnixNano"):
        if f in r:
            check_int(r[f], f"{where}.{f}", unsigned=True)
    if "severityNumber" in r:
        s = r["severityNumber"]
        check((isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 24)
              or (isinstance(s, str) and re.fullmatch(r"SEVERITY_NUMBER_[A-Z0-9]+", s)),
              f"{where}.severityNumber: not a SeverityNumber")
    if "severityText" in r:
        check(isinstance(r["severityText"], str), f"{where}.severityText: not a string")
    if "body" in r:
        check_any(r["body"], f"{where}.body")
    if "attributes" in r:
        check_attrs(r["attributes"], f"{where}.attributes")
    for f in ("droppedAttributesCount", "flags"):
        if f in r:
            check_int(r[f], f"{where}.{f}", unsigned=True)
    if "traceId" in r:
        check_hex(r["traceId"], 32, f"{where}.traceId")
    if "spanId" in r:
        check_hex(r["spanId"], 16, f"{where}.spanId")


def otlp_record_id(r):
    for kv in r.get("attributes") or []:
        if kv.get("key") == "log.record.uid":
            v = kv.get("value") or {}
            for k in ANY_KINDS:
                if k in v:
                    return scalar_id(v[k])
    return None


def handle_otlp(body, fault):
    mt = media_type(HEADERS_TL.headers)
    if mt != "application/json":
        raise BadRequest(415, rpc_status(3, f"unsupported content type {mt or '(none)'!r}: this stand-in"
                                            " accepts only application/json"))
    try:
        req = json.loads(body.decode("utf-8")) if body.strip() else {}
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(400, rpc_status(3, f"invalid JSON: {e}"))
    flat = []
    try:
        check(isinstance(req, dict), "ExportLogsServiceRequest must be an object")
        rls = req.get("resourceLogs", [])
        check(isinstance(rls, list), "resourceLogs: not a list")
        for i, rl in enumerate(rls):
            w = f"resourceLogs[{i}]"
            check(isinstance(rl, dict), f"{w}: not an object")
            resource = rl.get("resource", {})
            check(isinstance(resource, dict), f"{w}.resource: not an object")
            if "attributes" in resource:
                check_attrs(resource["attributes"], f"{w}.resource.attributes")
            sls = rl.get("scopeLogs", [])
            check(isinstance(sls, list), f"{w}.scopeLogs: not a list")
            for j, sl in enumerate(sls):
                ws = f"{w}.scopeLogs[{j}]"
                check(isinstance(sl, dict), f"{ws}: not an object")
                scope = sl.get("scope", {})
                check(isinstance(scope, dict), f"{ws}.scope: not an object")
                if "attributes" in scope:
                    check_attrs(scope["attributes"], f"{ws}.scope.attributes")
                recs = sl.get("logRecords", [])
                check(isinstance(recs, list), f"{ws}.logRecords: not a list")
                for k, r in enumerate(recs):
                    check_log_record(r, f"{ws}.logRecords[{k}]")
                    flat.append((r, {"resource": resource, "scope": scope}))
    except OtlpInvalid as e:
        raise BadRequest(400, rpc_status(3, str(e)))
    k = 0
    if fault and fault["kind"] == "partial_reject":
        k = min(fault["partial_reject"], len(flat))
    e = ep("otlp")
    with LOCK:
        for n, (r, meta) in enumerate(flat):
            if n < len(flat) - k:
                e.store(otlp_record_id(r), r, meta)
            else:
                e.reject(otlp_record_id(r))
    if fault and fault["kind"] == "partial_reject":
        msg = fault.get("message") or f"standin: rejected {k} log records (injected fault)"
        count = k if fault.get("rejected_as_number") else str(k)
        return 200, {"partialSuccess": {"rejectedLogRecords": count, "errorMessage": msg}}, {}
    return 200, {}, {}


# ---------------------------------------------------------------- webhook


def handle_webhook(path, body, fault):
    if CONFIG.get("count_only"):
        # The bench's sink: lines counted, nothing parsed or kept (what is measured is the
        # sender; the tests check the records themselves).
        n = body.count(b"\n")
        with LOCK:
            ep("webhook").counted += n
        return 200, {"accepted": n}, {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(400, {"error": "the body is not UTF-8"})
    objs = []
    for n, line in enumerate(text.split("\n")):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise BadRequest(400, {"error": f"line {n + 1} is not JSON: {e}"})
        if not isinstance(obj, dict):
            raise BadRequest(400, {"error": f"line {n + 1} is not a JSON object"})
        objs.append(obj)
    e = ep("webhook")
    with LOCK:
        for obj in objs:
            e.store(lookup_id(obj), obj, {"path": path})
    return 200, {"accepted": len(objs)}, {}


# ---------------------------------------------------------------- control


def handle_control(method, path, query, body):
    name = (query.get("endpoint") or [None])[0]
    if path == "/_control/stats" and method in ("GET", "HEAD"):
        with LOCK:
            return 200, {n: ep(n).stats() for n in ENDPOINTS}
    if path == "/_control/records" and method in ("GET", "HEAD"):
        if name not in ENDPOINTS:
            return 400, {"error": f"endpoint must be one of {list(ENDPOINTS)}"}
        meta = (query.get("meta") or ["0"])[0] not in ("0", "", "false")
        with LOCK:
            recs = list(ep(name).records)
        return 200, recs if meta else [r["record"] for r in recs]
    if path == "/_control/headers" and method in ("GET", "HEAD"):
        if name not in ENDPOINTS:
            return 400, {"error": f"endpoint must be one of {list(ENDPOINTS)}"}
        with LOCK:
            h = ep(name).last_headers
        return 200, h or {"headers": None, "authorization": None}
    if path == "/_control/faults" and method == "POST":
        try:
            req = json.loads(body.decode("utf-8"))
            name = req["endpoint"]
            if name not in ENDPOINTS:
                raise ValueError(f"endpoint must be one of {list(ENDPOINTS)}")
            faults = req["faults"]
            if not isinstance(faults, list):
                raise ValueError("faults must be a list")
            parsed = []
            for f in faults:
                f = validate_fault(name, f)
                parsed.extend([f] * f.get("times", 1))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            return 400, {"error": f"bad fault request: {e}"}
        with LOCK:
            ep(name).faults.extend(parsed)
            return 200, {"queued": len(ep(name).faults)}
    if path == "/_control/reset" and method == "POST":
        with LOCK:
            reset_state()
        return 200, {"reset": True}
    if path == "/_control/config" and method == "POST":
        try:
            req = json.loads(body.decode("utf-8"))
            if "ack_delay" in req:
                CONFIG["ack_delay"] = float(req["ack_delay"])
        except (ValueError, TypeError, UnicodeDecodeError) as e:
            return 400, {"error": f"bad config request: {e}"}
        return 200, {"ack_delay": CONFIG["ack_delay"]}
    return 404, {"error": f"no control endpoint {method} {path}"}


# ---------------------------------------------------------------- HTTP


HEADERS_TL = threading.local()


class ClientGone(Exception):
    pass


def redact_headers(headers):
    out = {}
    for k, v in headers.items():
        k = k.lower()
        if k == "authorization":
            continue
        out[k] = f"{out[k]}, {v}" if k in out else v
    auth = headers.get("Authorization")
    info = {"present": auth is not None, "scheme": None, "matched": None}
    if auth is not None:
        scheme, _, cred = auth.strip().partition(" ")
        info["scheme"] = scheme
        if CONFIG["token"] is not None:
            info["matched"] = cred.strip() == CONFIG["token"]
    return {"headers": out, "authorization": info}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "siem-standin/1"
    sys_version = ""

    def log_message(self, fmt, *args):
        if CONFIG["verbose"]:
            sys.stderr.write("siem_standin: %s %s\n" % (self.address_string(), fmt % args))

    def log_error(self, fmt, *args):
        sys.stderr.write("siem_standin: %s %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_HEAD = do_DELETE = do_GET

    # -- body

    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ClientGone()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                data = self.rfile.read(size)
                if len(data) < size:
                    raise ClientGone()
                chunks.append(data)
                self.rfile.readline(3)
            raw = b"".join(chunks)
        else:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n > 0 else b""
            if len(raw) < n:
                raise ClientGone()
        return raw

    def decode_body(self, raw, name):
        enc = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if enc in ("", "identity"):
            return raw
        if enc in ("gzip", "x-gzip"):
            try:
                return gzip.decompress(raw)
            except (OSError, EOFError, ValueError) as e:
                raise BadRequest(400, self.error_body(name, 400, f"bad gzip body: {e}"))
        raise BadRequest(415, self.error_body(name, 415, f"unsupported Content-Encoding {enc!r}"))

    @staticmethod
    def error_body(name, status, msg):
        if name == "bulk":
            return es_error(status, "illegal_argument_exception" if status == 400 else "standin_exception", msg)
        if name in ("hec", "hec_ack"):
            return hec_error("Invalid data format", 6) if status == 400 else hec_error(msg, 8)
        if name == "otlp":
            return rpc_status(3, msg)
        return {"error": msg}

    # -- responses

    def send_json(self, status, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def abort_connection(self, reset):
        self.close_connection = True
        try:
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.server.abort_requested(self.connection)

    # -- routing

    def dispatch(self):
        try:
            self.route()
        except ClientGone:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout) as e:
            self.log_message("connection lost: %r", e)
            self.close_connection = True
        except Exception:
            sys.stderr.write(f"siem_standin: error handling {self.command} {self.path}\n")
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
            try:
                self.close_connection = True
                self.send_json(500, {"error": "internal error in siem_standin (see its stderr)"})
            except Exception:
                pass

    def route(self):
        HEADERS_TL.headers = self.headers
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        method = self.command
        raw = self.read_body()

        if path.startswith("/_control/"):
            status, obj = handle_control(method, path, query, self.decode_body(raw, "control"))
            return self.send_json(status, obj)
        if self.server.control_only:
            return self.send_json(404, {"error": "this port serves /_control only"})

        name, extra_headers, allowed = None, {}, ("POST",)
        m = re.fullmatch(r"/(?:([^/]+)/)?_bulk", path)
        if m:
            name, allowed = "bulk", ("POST", "PUT")
            extra_headers = {"X-Elastic-Product": "Elasticsearch"}
            path_index = unquote(m.group(1)) if m.group(1) else None
        elif path in ("/services/collector", "/services/collector/event", "/services/collector/event/1.0"):
            name = "hec"
        elif path in ("/services/collector/ack", "/services/collector/ack/1.0"):
            name = "hec_ack"
        elif path in ("/v1/logs",):
            name = "otlp"
        elif path.startswith("/webhook"):
            name = "webhook"
        elif path in ("/services/collector/health", "/services/collector/health/1.0") and method in ("GET", "HEAD"):
            return self.send_json(200, hec_error("HEC is healthy", 17))
        elif path == "/" and method in ("GET", "HEAD"):
            return self.send_json(200, {
                "name": "siem-standin", "cluster_name": "siem-standin", "cluster_uuid": "standin",
                "version": {"number": "8.13.0", "distribution": "siem-standin"},
                "tagline": "You Know, for Search (stand-in)"}, {"X-Elastic-Product": "Elasticsearch"})
        else:
            return self.send_json(404, {"error": f"no endpoint {method} {path}"})
        if method not in allowed:
            return self.send_json(405, self.error_body(name, 405, f"method {method} not allowed"),
                                  dict(extra_headers, Allow=", ".join(allowed)))

        e = ep(name)
        with LOCK:
            e.requests += 1
            e.last_headers = redact_headers(self.headers)
            fault = take_fault(name)

        if fault and fault["kind"] == "status":
            status = fault["status"]
            hdrs = dict(extra_headers)
            ra = fault.get("retry_after", 1 if status in (429, 503) else None)
            if ra is not None:
                hdrs["Retry-After"] = ra
            return self.send_json(status, fault.get("body", fault_body(name, status)), hdrs)
        if fault and fault["kind"] == "hang":
            time.sleep(fault["hang"])
            return self.send_json(503, fault_body(name, 503), dict(extra_headers, **{"Retry-After": 1}))

        try:
            body = self.decode_body(raw, name)
            if name == "bulk":
                status, obj, hdrs = handle_bulk(path_index, body, fault)
            elif name == "hec":
                status, obj, hdrs = handle_hec(query, body, fault)
            elif name == "hec_ack":
                status, obj, hdrs = handle_hec_ack(query, body, fault)
            elif name == "otlp":
                status, obj, hdrs = handle_otlp(body, fault)
            else:
                status, obj, hdrs = handle_webhook(path, body, fault)
        except BadRequest as br:
            status, obj, hdrs = br.status, br.body, br.headers

        if fault and fault["kind"] == "close":
            return self.abort_connection(fault["close"] == "reset")
        return self.send_json(status, obj, dict(extra_headers, **hdrs))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, addr, ssl_ctx=None, control_only=False):
        self.ssl_ctx = ssl_ctx
        self.control_only = control_only
        self.aborted = set()
        super().__init__(addr, Handler)

    def abort_requested(self, conn):
        """The handler sends nothing more; close `conn` without a shutdown(SHUT_WR) first."""
        with LOCK:
            self.aborted.add(id(conn))

    def shutdown_request(self, request):
        with LOCK:
            aborted = id(request) in self.aborted
            self.aborted.discard(id(request))
        if aborted:
            self.close_request(request)
        else:
            super().shutdown_request(request)

    def finish_request(self, request, client_address):
        conn = request
        if self.ssl_ctx is not None:
            try:
                request.settimeout(10)
                conn = self.ssl_ctx.wrap_socket(request, server_side=True)
                conn.settimeout(None)
            except (ssl.SSLError, OSError) as e:
                self.log_tls(client_address, e)
                return
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            if conn is not request:
                with LOCK:
                    self.aborted.discard(id(conn))
                try:
                    conn.close()  # no close_notify: a TLS close looks like a dropped connection
                except OSError:
                    pass

    @staticmethod
    def log_tls(client_address, e):
        if CONFIG["verbose"]:
            sys.stderr.write(f"siem_standin: TLS handshake with {client_address} failed: {e}\n")

    def handle_error(self, request, client_address):
        sys.stderr.write(f"siem_standin: error on connection from {client_address}\n")
        traceback.print_exc(file=sys.stderr)


def write_port_file(path, port):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description="Loopback stand-in for SIEM HTTP receivers (tests only).")
    p.add_argument("--port-file", required=True)
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--token")
    p.add_argument("--hec-ack", action="store_true")
    p.add_argument("--ack-delay", type=float, default=0.3)
    p.add_argument("--control-port-file")
    p.add_argument("--stdin-eof-exit", action="store_true")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--count-only", action="store_true",
                   help="webhook: count lines only (the bench's sink; no records kept)")
    a = p.parse_args()
    CONFIG.update(token=a.token, hec_ack=a.hec_ack, ack_delay=a.ack_delay, verbose=a.verbose,
                  count_only=a.count_only)

    ctx = None
    if a.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls[0], a.tls[1])
        ctx.set_alpn_protocols(["http/1.1"])

    servers = [(Server(("127.0.0.1", 0), ssl_ctx=ctx), a.port_file)]
    if a.control_port_file:
        servers.append((Server(("127.0.0.1", 0), control_only=True), a.control_port_file))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    for srv, _ in servers:
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    for srv, port_file in reversed(servers):  # the main port file last: once it exists, all is up
        write_port_file(port_file, srv.server_address[1])
    if a.stdin_eof_exit:
        def watch_stdin():
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            except (OSError, ValueError):
                pass
            stop.set()
        threading.Thread(target=watch_stdin, daemon=True).start()

    while not stop.wait(0.2):
        pass
    for srv, _ in servers:
        srv.shutdown()
        srv.server_close()
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
