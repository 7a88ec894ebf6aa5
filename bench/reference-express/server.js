// The baseline for streamgate's token endpoint: POST /api/tokens/user written
// the way a user would write it in an Express app, with the official Stream
// Node SDK doing the signing. It follows the same contract as streamgate (same
// body, same validation rules, same response envelope) so that the benchmark
// compares like with like. Nothing here is tuned: it is the obvious code.
//
// Environment: PORT (default 3000), STREAM_API_KEY, STREAM_API_SECRET.

'use strict';

const express = require('express');
const { StreamClient } = require('@stream-io/node-sdk');

const port = Number(process.env.PORT || 3000);
const apiKey = process.env.STREAM_API_KEY || 'dev-key';
const apiSecret = process.env.STREAM_API_SECRET || 'dev-secret-do-not-use-in-production';

const DEFAULT_VALIDITY_SECONDS = 3600;
const MAX_VALIDITY_SECONDS = 86400;
const USER_ID = /^[@\w-]{1,255}$/;
const CALL_NAME = /^[A-Za-z0-9_-]{1,64}$/;

const client = new StreamClient(apiKey, apiSecret);
const app = express();

// express.json() parses only application/json bodies; anything else leaves
// req.body undefined, which the handler answers with 415.
app.use(express.json({ limit: '16kb' }));

function fail(res, status, error) {
  return res.status(status).json({ success: false, error });
}

app.post('/api/tokens/user', (req, res) => {
  if (!req.is('application/json')) {
    return fail(res, 415, 'Unsupported Content-Type: send application/json');
  }
  const body = req.body;
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    return fail(res, 400, 'Invalid JSON body: expected a JSON object');
  }
  const { userId, validityInSeconds, callId, callType } = body;

  if (userId == null) {
    return fail(res, 422, 'Validation failed: userId is required');
  }
  if (typeof userId !== 'string') {
    return fail(res, 422, 'Validation failed: userId must be a string');
  }
  if (!USER_ID.test(userId)) {
    return fail(res, 422, 'Validation failed: userId must be 1 to 255 characters from A-Z a-z 0-9 @ _ -');
  }
  const validity = validityInSeconds == null ? DEFAULT_VALIDITY_SECONDS : validityInSeconds;
  if (!Number.isInteger(validity) || validity < 1 || validity > MAX_VALIDITY_SECONDS) {
    return fail(res, 422, `Validation failed: validityInSeconds must be an integer between 1 and ${MAX_VALIDITY_SECONDS}`);
  }
  if (callId != null && (typeof callId !== 'string' || !CALL_NAME.test(callId))) {
    return fail(res, 422, 'Validation failed: callId must be 1 to 64 characters from A-Z a-z 0-9 _ -');
  }
  const type = callType == null ? 'default' : callType;
  if (typeof type !== 'string' || !CALL_NAME.test(type)) {
    return fail(res, 422, 'Validation failed: callType must be 1 to 64 characters from A-Z a-z 0-9 _ -');
  }

  let token;
  try {
    token = callId == null
      ? client.generateUserToken({ user_id: userId, validity_in_seconds: validity })
      : client.generateCallToken({
        user_id: userId,
        call_cids: [`${type}:${callId}`],
        validity_in_seconds: validity,
      });
  } catch (err) {
    console.error('token signing failed:', err.message);
    return fail(res, 500, 'Internal error: the token could not be signed');
  }

  return res.json({
    success: true,
    data: {
      token,
      userId,
      apiKey,
      callId: callId == null ? undefined : callId,
      callType: type,
      validityInSeconds: validity,
      expiresAt: new Date(Date.now() + validity * 1000).toISOString(),
    },
  });
});

// Malformed or oversized JSON from express.json(): same statuses as streamgate.
app.use((err, req, res, next) => {
  if (err.type === 'entity.too.large') {
    return fail(res, 413, 'Request body too large: the limit is 16384 bytes');
  }
  if (err.type === 'entity.parse.failed') {
    return fail(res, 400, `Invalid JSON body: ${err.message}`);
  }
  return next(err);
});

app.listen(port, '127.0.0.1', () => {
  console.log(`reference-express listening on 127.0.0.1:${port}`);
});
