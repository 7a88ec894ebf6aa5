-- POST /api/tokens/user as nginx + Lua (OpenResty's lua-nginx-module on
-- Debian's nginx, LuaJIT): the strongest peer of streamgate's token endpoint
-- in bench/run.sh (issue 12). The same contract as streamgate (src/token/,
-- README "The token contract"), written the way an OpenResty user who cares
-- about speed would: lua-cjson for the body, HMAC-SHA256 from libcrypto
-- through LuaJIT's FFI, base64url from nginx's own encoder (ngx.base64), the
-- constant JWT header segment and the claims and answer built by
-- concatenation in streamgate's field order.
--
-- Loaded once by init_by_lua_block in bench/nginx/token-lua.conf (in the
-- master, before the worker forks), which calls init{...} with the
-- credentials and the limits of bench/streamgate-bench.yaml; the location
-- calls handle().
--
-- The same statuses and envelope as streamgate: 415 for a Content-Type that
-- is not application/json, 413 over max_body_bytes (nginx's
-- client_max_body_size, turned into the envelope by the config's
-- error_page), 400 for a body that is not a JSON object, 422 for a field that
-- breaks its rule. Messages are streamgate's, except that a JSON syntax error
-- carries lua-cjson's description instead of serde's, and a duplicated key is
-- not detected (lua-cjson keeps the last one; serde refuses it).

local ffi = require "ffi"
local cjson = require "cjson"
local base64 = require "ngx.base64"

local C = ffi.C
local ngx = ngx
local type, tostring, pcall = type, tostring, pcall
local floor = math.floor
local byte, find, format, lower, match, gsub =
    string.byte, string.find, string.format, string.lower, string.match, string.gsub
local os_date = os.date
local ffi_string = ffi.string

ffi.cdef [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md,
                    unsigned int *md_len);
]]

-- nginx is linked with libssl, so libcrypto.so.3 is in the process already;
-- loading it by name makes that explicit and works either way.
local crypto = ffi.load("libcrypto.so.3")

-- {"alg":"HS256","typ":"JWT"}, the segment every Stream SDK emits.
local HEADER_SEGMENT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"

-- lua-cjson's defaults accept NaN, Infinity and hex numbers; serde does not.
cjson.decode_invalid_numbers(false)
local decode = cjson.decode
local null = cjson.null

local _M = {}

local api_key, secret, secret_len
local default_validity, max_validity, iat_leeway, max_body
local sha256
-- One worker, one request at a time in this handler (it never yields while
-- using them): the HMAC output buffers are allocated once.
local md = ffi.new("unsigned char[32]")
local md_len = ffi.new("unsigned int[1]")

local USER_ID_RULE = "must be 1 to 255 characters from A-Z a-z 0-9 @ _ -"
local NAME_RULE = "must be 1 to 64 characters from A-Z a-z 0-9 _ -"
local validity_rule

function _M.init(opts)
    api_key = opts.api_key
    secret = opts.api_secret
    secret_len = #secret
    default_validity = opts.default_validity_seconds
    max_validity = opts.max_validity_seconds
    iat_leeway = opts.iat_leeway_seconds
    max_body = opts.max_body_bytes
    validity_rule = "must be an integer between 1 and " .. max_validity
    sha256 = crypto.EVP_sha256()
end

-- A JSON string literal the way serde_json writes one (short escapes for
-- \b \f \n \r \t, \u00XX for the other control characters, "/" as is).
local SHORT_ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
    ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
local function escape_char(c)
    return SHORT_ESCAPES[c] or format("\\u%04x", byte(c))
end
local function json_string(s)
    return '"' .. gsub(s, '[%c"\\]', escape_char) .. '"'
end

local function reply(status, body)
    ngx.status = status
    local header = ngx.header
    header["Content-Type"] = "application/json"
    -- A Content-Length, so that nginx does not send the answer chunked.
    header["Content-Length"] = #body
    if status == 200 then
        header["Cache-Control"] = "no-store"
    end
    ngx.print(body)
end

local function fail(status, message)
    return reply(status, '{"success":false,"error":' .. json_string(message) .. "}")
end

-- The error_page target for a body over client_max_body_size.
function _M.too_large()
    return fail(413, "Request body too large: the limit is " .. max_body .. " bytes")
end

local function is_user_id(s)
    local n = #s
    return n >= 1 and n <= 255 and not find(s, "[^A-Za-z0-9@_%-]")
end

local function is_name(s)
    local n = #s
    return n >= 1 and n <= 64 and not find(s, "[^A-Za-z0-9_%-]")
end

-- A string field: nil when absent (or null), false plus the message when it
-- breaks its rule.
local function string_field(value, field, valid, rule)
    if value == nil or value == null then
        return nil
    end
    if type(value) ~= "string" then
        return false, "Validation failed: " .. field .. " must be a string"
    end
    if not valid(value) then
        return false, "Validation failed: " .. field .. " " .. rule
    end
    return value
end

local function hs256(message)
    crypto.HMAC(sha256, secret, secret_len, message, #message, md, md_len)
    return base64.encode_base64url(ffi_string(md, md_len[0]))
end

function _M.handle()
    if ngx.req.get_method() ~= "POST" then
        return fail(405, "Method not allowed: POST " .. ngx.var.uri)
    end
    -- Content-Type absent is read as JSON; present, its essence (parameters
    -- such as charset allowed, case-insensitive) must be application/json.
    local content_type = ngx.var.http_content_type
    if content_type then
        local essence = lower(match(content_type, "^%s*([^;]-)%s*;") or match(content_type, "^%s*(.-)%s*$"))
        if essence ~= "application/json" then
            return fail(415, "Unsupported Content-Type " .. json_string(content_type) .. ": send application/json")
        end
    end

    ngx.req.read_body()
    -- client_body_buffer_size = client_max_body_size: an accepted body is
    -- always in memory, never in a temp file.
    local body = ngx.req.get_body_data()
    if body == nil or not find(body, "%S") then
        return fail(400, 'Invalid JSON body: the body is empty; send a JSON object such as {"userId":"john"}')
    end
    local ok, raw = pcall(decode, body)
    if not ok then
        return fail(400, "Invalid JSON body: " .. tostring(raw))
    end
    if type(raw) ~= "table" or match(body, "^%s*(.)") ~= "{" then
        return fail(400, "Invalid JSON body: expected a JSON object")
    end

    local user_id, err = string_field(raw.userId, "userId", is_user_id, USER_ID_RULE)
    if not user_id then
        return fail(422, err or "Validation failed: userId is required")
    end

    local validity = raw.validityInSeconds
    if validity == nil or validity == null then
        validity = default_validity
    elseif type(validity) ~= "number" or validity ~= floor(validity)
        or validity < 1 or validity > max_validity then
        return fail(422, "Validation failed: validityInSeconds " .. validity_rule)
    end

    local call_id
    call_id, err = string_field(raw.callId, "callId", is_name, NAME_RULE)
    if call_id == false then
        return fail(422, err)
    end
    local call_type
    call_type, err = string_field(raw.callType, "callType", is_name, NAME_RULE)
    if call_type == false then
        return fail(422, err)
    end
    call_type = call_type or "default"

    -- The fields are ASCII from the rules above: nothing to escape.
    local now = ngx.time()
    local exp = now + validity
    local claims = format('{"user_id":"%s","iat":%d,"exp":%d', user_id, now - iat_leeway, exp)
    if call_id then
        claims = claims .. ',"call_cids":["' .. call_type .. ":" .. call_id .. '"]}'
    else
        claims = claims .. "}"
    end
    local signing_input = HEADER_SEGMENT .. "." .. base64.encode_base64url(claims)
    local token = signing_input .. "." .. hs256(signing_input)

    local body_out = '{"success":true,"data":{"token":"' .. token
        .. '","userId":"' .. user_id
        .. '","apiKey":' .. json_string(api_key)
        .. (call_id and (',"callId":"' .. call_id .. '"') or "")
        .. ',"callType":"' .. call_type
        .. '","validityInSeconds":' .. format("%d", validity)
        .. ',"expiresAt":"' .. os_date("!%Y-%m-%dT%H:%M:%SZ", exp) .. '"}}'
    return reply(200, body_out)
end

return _M
