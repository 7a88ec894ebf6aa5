#!/usr/bin/env python3
"""Checks that token endpoints serve the same contract before bench/run.sh
times them (issue 12): a fast wrong answer would make a meaningless number.

    python3 bench/token_check.py SECRET API_KEY REFERENCE_URL OTHER_URL...

REFERENCE_URL is streamgate's POST /api/tokens/user. For every URL, the bench
request and a few variants must answer 200 with the envelope and data fields
in streamgate's order, and a token whose header is the SDKs' segment, whose
HS256 signature verifies with SECRET (and not with another key), and whose
claims are exactly user_id, iat = now - 5, exp = now + validity (and
call_cids when a callId was sent); expiresAt is exp in RFC 3339. Then a set
of bad requests must get the reference's status and the same
{"success":false,"error":...} envelope, with the same message except where
the JSON parser's own wording is expected to differ. Standard library only.
Exit status 0 when every URL passes, 1 (and what differed on stderr) when not.
"""

import base64
import hashlib
import hmac
import http.client
import json
import sys
import time
import urllib.parse
from datetime import datetime, timezone

HEADER_SEGMENT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
IAT_LEEWAY = 5
DEFAULT_VALIDITY = 3600

# (request body, expected data fields besides token/apiKey/expiresAt)
GOOD = [
    ('{"userId":"john_doe","validityInSeconds":7200,"callId":"meeting-123","callType":"default"}',
     {"userId": "john_doe", "callId": "meeting-123", "callType": "default", "validityInSeconds": 7200}),
    ('{"userId":"a@b-c_D9"}',
     {"userId": "a@b-c_D9", "callType": "default", "validityInSeconds": DEFAULT_VALIDITY}),
    ('{"userId":"u","validityInSeconds":60.0,"callId":null,"callType":"livestream","x":[1,{}]}',
     {"userId": "u", "callType": "livestream", "validityInSeconds": 60}),
    ('{"userId":"u","callId":"c","validityInSeconds":86400}',
     {"userId": "u", "callId": "c", "callType": "default", "validityInSeconds": 86400}),
]

# (what, content type or None, body, compare the message too)
BAD = [
    ("wrong content type", "text/plain", '{"userId":"u"}', True),
    ("malformed JSON", "application/json", '{"userId":', False),
    ("not an object", "application/json", '["u"]', True),
    ("empty body", "application/json", "", True),
    ("userId missing", "application/json", '{"validityInSeconds":60}', True),
    ("userId null", "application/json", '{"userId":null}', True),
    ("userId not a string", "application/json", '{"userId":42}', True),
    ("userId bad character", "application/json", '{"userId":"john doe"}', True),
    ("userId too long", "application/json", '{"userId":"%s"}' % ("u" * 256), True),
    ("validity too large", "application/json", '{"userId":"u","validityInSeconds":86401}', True),
    ("validity zero", "application/json", '{"userId":"u","validityInSeconds":0}', True),
    ("validity fractional", "application/json", '{"userId":"u","validityInSeconds":1.5}', True),
    ("validity a string", "application/json", '{"userId":"u","validityInSeconds":"60"}', True),
    ("callId bad character", "application/json", '{"userId":"u","callId":"a:b"}', True),
    ("callId not a string", "application/json", '{"userId":"u","callId":7}', True),
    ("callType too long", "application/json", '{"userId":"u","callType":"%s"}' % ("t" * 65), True),
    ("body over 16384 bytes", "application/json", '{"userId":"u","pad":"%s"}' % ("p" * 16400), True),
]


def b64url_decode(segment):
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def post(url, content_type, body):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    headers = {"Content-Type": content_type} if content_type else {}
    conn.request("POST", parts.path, body=body.encode(), headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, resp.getheader("Content-Type"), data


def check_good(url, secret, api_key, body, expected):
    """Problems with the answer to one valid request, as a list of strings."""
    status, ctype, raw = post(url, "application/json", body)
    if status != 200:
        return [f"{body}: status {status}, body {raw[:200]!r}"]
    problems = []
    if ctype != "application/json":
        problems.append(f"{body}: Content-Type {ctype!r}")
    envelope = json.loads(raw)
    if list(envelope) != ["success", "data"] or envelope["success"] is not True:
        return problems + [f"{body}: envelope {raw[:200]!r}"]
    data = envelope["data"]
    order = ["token", "userId", "apiKey"] + (["callId"] if "callId" in expected else []) + \
        ["callType", "validityInSeconds", "expiresAt"]
    if list(data) != order:
        problems.append(f"{body}: data fields {list(data)}, expected {order}")
    for key, value in list(expected.items()) + [("apiKey", api_key)]:
        if data.get(key) != value or type(data.get(key)) is not type(value):
            problems.append(f"{body}: {key} = {data.get(key)!r}, expected {value!r}")

    token = data.get("token", "")
    parts = token.split(".")
    if len(parts) != 3:
        return problems + [f"{body}: token {token!r} is not a JWS"]
    if parts[0] != HEADER_SEGMENT:
        problems.append(f"{body}: header segment {parts[0]!r}")
    signing_input = f"{parts[0]}.{parts[1]}".encode()
    for key, should_verify in ((secret, True), (secret + "x", False)):
        mac = base64.urlsafe_b64encode(hmac.new(key.encode(), signing_input, hashlib.sha256).digest())
        if hmac.compare_digest(mac.rstrip(b"=").decode(), parts[2]) != should_verify:
            problems.append(f"{body}: signature {'does not verify' if should_verify else 'verifies'}"
                            f" with {'the' if should_verify else 'another'} secret")
    if "=" in token:
        problems.append(f"{body}: padding in the token")
    claims = json.loads(b64url_decode(parts[1]))
    claim_order = ["user_id", "iat", "exp"] + (["call_cids"] if "callId" in expected else [])
    if list(claims) != claim_order:
        problems.append(f"{body}: claims {list(claims)}, expected {claim_order}")
    now = int(time.time())
    validity = expected["validityInSeconds"]
    iat, exp = claims.get("iat", 0), claims.get("exp", 0)
    if exp - iat != validity + IAT_LEEWAY or abs(iat + IAT_LEEWAY - now) > 2:
        problems.append(f"{body}: iat {iat}, exp {exp}, now {now}")
    if claims.get("user_id") != expected["userId"]:
        problems.append(f"{body}: user_id claim {claims.get('user_id')!r}")
    if "callId" in expected and claims.get("call_cids") != [f"{expected['callType']}:{expected['callId']}"]:
        problems.append(f"{body}: call_cids {claims.get('call_cids')!r}")
    expires_at = datetime.fromtimestamp(exp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if data.get("expiresAt") != expires_at:
        problems.append(f"{body}: expiresAt {data.get('expiresAt')!r}, expected {expires_at!r}")
    return problems


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    secret, api_key, urls = sys.argv[1], sys.argv[2], sys.argv[3:]
    problems = []
    for url in urls:
        for body, expected in GOOD:
            problems += [f"{url}: {p}" for p in check_good(url, secret, api_key, body, expected)]

    reference = urls[0]
    for what, ctype, body, same_message in BAD:
        ref_status, _, ref_raw = post(reference, ctype, body)
        if not 400 <= ref_status < 500:
            problems.append(f"{reference}: {what}: status {ref_status}")
            continue
        ref = json.loads(ref_raw)
        for url in urls[1:]:
            status, rtype, raw = post(url, ctype, body)
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = None
            if status != ref_status:
                problems.append(f"{url}: {what}: status {status}, the reference {ref_status}")
            elif rtype != "application/json" or not isinstance(answer, dict) or \
                    list(answer) != ["success", "error"] or answer["success"] is not False:
                problems.append(f"{url}: {what}: not the error envelope: {raw[:200]!r}")
            elif same_message and answer["error"] != ref["error"]:
                problems.append(f"{url}: {what}: error {answer['error']!r}, the reference {ref['error']!r}")
            elif not same_message and answer["error"].split(":")[0] != ref["error"].split(":")[0]:
                problems.append(f"{url}: {what}: error {answer['error']!r}, the reference {ref['error']!r}")

    for p in problems:
        print(f"token_check: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"token_check: {len(urls)} endpoints, {len(GOOD)} valid and {len(BAD)} bad requests each: same contract")


if __name__ == "__main__":
    main()
