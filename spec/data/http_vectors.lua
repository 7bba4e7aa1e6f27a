-- HTTP/1.1 request vectors: what a strict RFC 9112 server answers to each request, built from
-- RFC 9112 / RFC 9110 and published request-smuggling research:
--   [RFC]      RFC 9112 (HTTP/1.1 message syntax), RFC 9110 (semantics)
--   [WATCHFIRE] Linhart et al., "HTTP Request Smuggling" (2005): CL.CL, CL.TE
--   [KETTLE19] James Kettle, "HTTP Desync Attacks: Request Smuggling Reborn" (2019): CL.TE,
--              TE.CL, TE.TE obfuscations ("Transfer-Encoding : chunked", "xchunked", tab/space,
--              "chunked, identity", duplicate TE, obs-fold, vertical tab / form feed)
--   [KETTLE22] James Kettle, "Browser-Powered Desync Attacks" (2022): CL.0, pause-based desync
--   [FUNKY]    Jeppe Bonde Weikop, "Funky chunks: abusing ambiguous chunk line terminators" (2025):
--              bare LF / bare CR in chunk lines and extensions, TERM.SPILL (junk after chunk data)
--   [HTTPGARDEN] Ben Kallus et al., "HTTP Garden" differential-fuzzing findings (2023-24):
--              NUL/CTL in values, whitespace before colon, chunk-size overflow, leading zeros
-- Each vector: id, group, request (raw bytes), expect (the status of the first response;
-- 200 means "accepted and handed to the handler"), ref, and optionally:
--   body  the request body the handler must have read (checked against luacluster only)
--   path  the req.path the handler must have seen (luacluster only)
--   note  why the expected outcome is what it is
-- The server under test must answer every vector, and close the connection after a 4xx/5xx.
-- The table is data only: spec/http_strict_spec.lua runs it against luacluster,
-- bench/http_vectors_nginx.lua against nginx.

local CRLF = "\r\n"

-- r(request_line, {header lines}, body): a request with CRLF line ends
local function r(line, headers, body)
  local t = { line }
  for _, h in ipairs(headers or {}) do
    t[#t + 1] = h
  end
  return table.concat(t, CRLF) .. CRLF .. CRLF .. (body or "")
end

-- a POST with the given headers (Host: a first) and body
local function post(headers, body)
  local h = { "Host: a" }
  for _, x in ipairs(headers) do
    h[#h + 1] = x
  end
  return r("POST / HTTP/1.1", h, body)
end

local function chunked(body)
  return post({ "Transfer-Encoding: chunked" }, body)
end

local function get_with(header)
  return r("GET / HTTP/1.1", { "Host: a", header })
end

local function many_headers(n)
  local h = { "Host: a" }
  for i = 2, n do
    h[#h + 1] = "X-H" .. i .. ": " .. i
  end
  return r("GET / HTTP/1.1", h)
end

local V = {}
local function add(group, list)
  for _, v in ipairs(list) do
    v.group = group
    V[#V + 1] = v
  end
end

-- ---- the request line ----
add("request-line", {
  { id = "get", request = r("GET / HTTP/1.1", { "Host: a" }), expect = 200, ref = "RFC 9112 3", path = "/" },
  { id = "http10-without-host", request = r("GET / HTTP/1.0"), expect = 200, ref = "RFC 9112 3.2" },
  { id = "http11-without-host", request = r("GET / HTTP/1.1"), expect = 400, ref = "RFC 9112 3.2 (MUST 400)" },
  { id = "two-hosts", request = r("GET / HTTP/1.1", { "Host: a", "Host: b" }), expect = 400, ref = "RFC 9112 3.2 (MUST 400)" },
  { id = "two-hosts-same", request = r("GET / HTTP/1.1", { "Host: a", "Host: a" }), expect = 400, ref = "RFC 9112 3.2 (MUST 400)" },
  { id = "http10-two-hosts", request = r("GET / HTTP/1.0", { "Host: a", "Host: b" }), expect = 400, ref = "RFC 9110 7.2" },
  { id = "host-empty", request = r("GET / HTTP/1.1", { "Host:" }), expect = 200, ref = "RFC 9110 7.2 (empty when no authority)" },
  { id = "host-port", request = r("GET / HTTP/1.1", { "Host: a:8080" }), expect = 200, ref = "RFC 9110 7.2" },
  { id = "host-ipv6", request = r("GET / HTTP/1.1", { "Host: [::1]:8080" }), expect = 200, ref = "RFC 3986 3.2.2" },
  { id = "host-with-space", request = r("GET / HTTP/1.1", { "Host: a b" }), expect = 400, ref = "RFC 9112 3.2 (invalid Host value: MUST 400)" },
  { id = "host-with-slash", request = r("GET / HTTP/1.1", { "Host: a/b" }), expect = 400, ref = "RFC 9112 3.2 (invalid Host value)" },
  { id = "host-with-userinfo", request = r("GET / HTTP/1.1", { "Host: u@a" }), expect = 400, ref = "RFC 9112 3.2 (invalid Host value)" },
  { id = "version-2.0", request = r("GET / HTTP/2.0", { "Host: a" }), expect = 505, ref = "RFC 9110 15.6.6" },
  { id = "version-1.2", request = r("GET / HTTP/1.2", { "Host: a" }), expect = 505, ref = "issue: only 1.0/1.1",
    note = "RFC 9110 2.5 lets a server treat 1.2 as 1.1; we refuse anything but 1.0 and 1.1" },
  { id = "version-3.0", request = r("GET / HTTP/3.0", { "Host: a" }), expect = 505, ref = "RFC 9110 15.6.6" },
  { id = "version-0.9-in-line", request = r("GET / HTTP/0.9", { "Host: a" }), expect = 505, ref = "RFC 9110 15.6.6" },
  { id = "version-lowercase", request = r("GET / http/1.1", { "Host: a" }), expect = 400, ref = "RFC 9112 2.3 (case-sensitive)" },
  { id = "version-two-digit-minor", request = r("GET / HTTP/1.10", { "Host: a" }), expect = 400, ref = "RFC 9112 2.3 (DIGIT . DIGIT)" },
  { id = "version-no-minor", request = r("GET / HTTP/1", { "Host: a" }), expect = 400, ref = "RFC 9112 2.3" },
  { id = "http09-request", request = "GET /\r\n\r\n", expect = 400, ref = "RFC 9112 3 (no HTTP/0.9)" },
  { id = "double-space-after-method", request = r("GET  / HTTP/1.1", { "Host: a" }), expect = 400, ref = "RFC 9112 3 (single SP)" },
  { id = "double-space-before-version", request = r("GET /  HTTP/1.1", { "Host: a" }), expect = 400, ref = "RFC 9112 3" },
  { id = "tab-separators", request = r("GET\t/\tHTTP/1.1", { "Host: a" }), expect = 400, ref = "RFC 9112 3 (SP only)" },
  { id = "trailing-space-after-version", request = r("GET / HTTP/1.1 ", { "Host: a" }), expect = 400, ref = "RFC 9112 3" },
  { id = "leading-space-request-line", request = r(" GET / HTTP/1.1", { "Host: a" }), expect = 400, ref = "RFC 9112 3" },
  { id = "leading-crlf", request = "\r\n" .. r("GET / HTTP/1.1", { "Host: a" }), expect = 200, ref = "RFC 9112 2.2 (SHOULD ignore)" },
  { id = "leading-lf", request = "\n" .. r("GET / HTTP/1.1", { "Host: a" }), expect = 200, ref = "RFC 9112 2.2" },
  { id = "absolute-form", request = r("GET http://a/abs?x=1 HTTP/1.1", { "Host: a" }), expect = 200, ref = "RFC 9112 3.2.2 (MUST accept)", path = "/abs" },
  { id = "absolute-form-other-host", request = r("GET http://b/x HTTP/1.1", { "Host: a" }), expect = 200, ref = "RFC 9112 3.2.2 (target wins)", path = "/x" },
  { id = "options-asterisk", request = r("OPTIONS * HTTP/1.1", { "Host: a" }), expect = 200, ref = "RFC 9112 3.2.4", path = "*" },
  { id = "get-asterisk", request = r("GET * HTTP/1.1", { "Host: a" }), expect = 400, ref = "RFC 9112 3.2.4 (OPTIONS only)" },
  { id = "connect-authority-form", request = r("CONNECT a:443 HTTP/1.1", { "Host: a:443" }), expect = 200, ref = "RFC 9112 3.2.3" },
  { id = "get-authority-form", request = r("GET a:443 HTTP/1.1", { "Host: a" }), expect = 400, ref = "RFC 9112 3.2.3 (CONNECT only)" },
  { id = "target-without-slash", request = r("GET a HTTP/1.1", { "Host: a" }), expect = 400, ref = "RFC 9112 3.2.1" },
  { id = "unknown-method", request = r("FOO / HTTP/1.1", { "Host: a" }), expect = 501, ref = "RFC 9110 9.1 (SHOULD 501)" },
  { id = "lowercase-method", request = r("get / HTTP/1.1", { "Host: a" }), expect = 501, ref = "RFC 9110 9.1 (methods are case-sensitive)" },
  { id = "method-non-tchar", request = r("GE(T / HTTP/1.1", { "Host: a" }), expect = 400, ref = "RFC 9110 9.1 (method = token)" },
  { id = "target-ctl", request = r("GET /\1 HTTP/1.1", { "Host: a" }), expect = 400, ref = "RFC 3986" },
  { id = "target-del", request = r("GET /\127 HTTP/1.1", { "Host: a" }), expect = 400, ref = "RFC 3986" },
  { id = "target-nul", request = r("GET /\0 HTTP/1.1", { "Host: a" }), expect = 400, ref = "RFC 3986" },
  { id = "target-obs-text", request = r("GET /caf\195\169 HTTP/1.1", { "Host: a" }), expect = 200, ref = "RFC 3986 (lenient, as nginx)",
    note = "raw UTF-8 in the path is not RFC 3986 but every server takes it" },
  { id = "target-fragment", request = r("GET /a#b HTTP/1.1", { "Host: a" }), expect = 200, ref = "RFC 9112 3.2.1 (lenient)", path = "/a",
    note = "a fragment is not part of origin-form; it is dropped" },
  { id = "long-url", request = r("GET /" .. string.rep("u", 20000) .. " HTTP/1.1", { "Host: a" }), expect = 431, ref = "max_header_size (16 KB)",
    note = "the whole head counts against max_header_size; 414 would also do" },
  { id = "method-only", request = "GET\r\n\r\n", expect = 400, ref = "RFC 9112 3" },
  { id = "garbage", request = "\22\3\1\0\165\1\0\0\161\3\3\r\n\r\n", expect = 400, ref = "a TLS ClientHello on the plain port" },
  { id = "h2-prior-knowledge", request = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", expect = 505, ref = "RFC 9113 3.4",
    note = "the HTTP/2 preface is an HTTP/2.0 request line to an HTTP/1.1 server" },
})

-- ---- header fields ----
add("field-syntax", {
  { id = "space-before-colon", request = r("GET / HTTP/1.1", { "Host : a" }), expect = 400, ref = "RFC 9112 5.1 (MUST 400) [KETTLE19]" },
  { id = "tab-before-colon", request = get_with("X-A\t: 1"), expect = 400, ref = "RFC 9112 5.1 (MUST 400)" },
  { id = "obs-fold", request = get_with("X-A: a\r\n b"), expect = 400, ref = "RFC 9112 5.2 (400 or unfold)" },
  { id = "obs-fold-tab", request = get_with("X-A: a\r\n\tb"), expect = 400, ref = "RFC 9112 5.2" },
  { id = "leading-space-first-field", request = "GET / HTTP/1.1\r\n Host: a\r\n\r\n", expect = 400, ref = "RFC 9112 2.2 (MUST reject or ignore)" },
  { id = "empty-name", request = get_with(": x"), expect = 400, ref = "RFC 9110 5.1 (token)" },
  { id = "name-with-space", request = get_with("X A: 1"), expect = 400, ref = "RFC 9110 5.1" },
  { id = "name-with-paren", request = get_with("X(A): 1"), expect = 400, ref = "RFC 9110 5.6.2 (tchar)" },
  { id = "name-with-at", request = get_with("X@A: 1"), expect = 400, ref = "RFC 9110 5.6.2" },
  { id = "name-with-slash", request = get_with("X/A: 1"), expect = 400, ref = "RFC 9110 5.6.2" },
  { id = "name-with-ctl", request = get_with("X\1A: 1"), expect = 400, ref = "RFC 9110 5.6.2 [HTTPGARDEN]" },
  { id = "name-with-nul", request = get_with("X\0A: 1"), expect = 400, ref = "RFC 9110 5.6.2 [HTTPGARDEN]" },
  { id = "name-with-utf8", request = get_with("X\195\169: 1"), expect = 400, ref = "RFC 9110 5.6.2" },
  { id = "name-all-tchar-specials", request = get_with("X!#$%&'*+-.^_`|~: 1"), expect = 200, ref = "RFC 9110 5.6.2" },
  { id = "no-colon", request = get_with("X-A 1"), expect = 400, ref = "RFC 9112 5" },
  { id = "value-nul", request = get_with("X-A: a\0b"), expect = 400, ref = "RFC 9110 5.5 (MUST reject or replace) [HTTPGARDEN]" },
  { id = "value-ctl-01", request = get_with("X-A: a\1b"), expect = 400, ref = "RFC 9110 5.5" },
  { id = "value-vtab", request = get_with("X-A: a\11b"), expect = 400, ref = "RFC 9110 5.5 [KETTLE19]" },
  { id = "value-formfeed", request = get_with("X-A: a\12b"), expect = 400, ref = "RFC 9110 5.5 [KETTLE19]" },
  { id = "value-escape", request = get_with("X-A: a\27b"), expect = 400, ref = "RFC 9110 5.5" },
  { id = "value-del", request = get_with("X-A: a\127b"), expect = 400, ref = "RFC 9110 5.5" },
  { id = "value-bare-cr", request = get_with("X-A: a\rb"), expect = 400, ref = "RFC 9112 2.2 (MUST reject or replace)" },
  { id = "value-tab-inside", request = get_with("X-A: a\tb"), expect = 200, ref = "RFC 9110 5.5 (HTAB allowed)" },
  { id = "value-obs-text", request = get_with("X-A: caf\233"), expect = 200, ref = "RFC 9110 5.5 (obs-text allowed)" },
  { id = "value-empty", request = get_with("X-A:"), expect = 200, ref = "RFC 9110 5.5" },
  { id = "value-no-ows", request = r("GET / HTTP/1.1", { "Host:a" }), expect = 200, ref = "RFC 9112 5.1 (OWS optional)" },
  { id = "value-ows-spaces-and-tabs", request = get_with("X-A: \t v \t "), expect = 200, ref = "RFC 9112 5.1 (OWS both sides)" },
  { id = "bare-cr-line-end", request = "GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n", expect = 400, ref = "RFC 9112 2.2 (bare CR MUST be rejected or replaced)" },
  { id = "bare-cr-after-request-line", request = "GET / HTTP/1.1\rHost: a\r\n\r\n", expect = 400, ref = "RFC 9112 2.2" },
  { id = "bare-cr-blank-line", request = "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", expect = 400, ref = "RFC 9112 2.2" },
  { id = "bare-lf-line-ends", request = "GET / HTTP/1.1\nHost: a\nX-A: 1\n\n", expect = 200, ref = "RFC 9112 2.2 (MAY accept LF)" },
  { id = "bare-lf-mixed", request = "GET / HTTP/1.1\r\nHost: a\nX-A: 1\r\n\n", expect = 200, ref = "RFC 9112 2.2" },
  { id = "100-fields", request = many_headers(100), expect = 200, ref = "our limit: 100 fields" },
  { id = "101-fields", request = many_headers(101), expect = 431, ref = "RFC 6585 5 (our limit: 100 fields)" },
  { id = "field-20k", request = get_with("X-Big: " .. string.rep("b", 20000)), expect = 431, ref = "RFC 6585 5 (max_header_size)" },
  { id = "expect-100-continue", request = post({ "Content-Length: 5", "Expect: 100-continue" }, "hello"), expect = 200, body = "hello", ref = "RFC 9110 10.1.1" },
  { id = "expect-unknown", request = get_with("Expect: something"), expect = 200, ref = "RFC 9110 10.1.1 (MAY 417)" },
  { id = "upgrade-h2c-ignored", request = r("GET / HTTP/1.1", { "Host: a", "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
    "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA" }), expect = 200, ref = "RFC 9110 7.8 (MAY ignore Upgrade)" },
})

-- ---- Content-Length ----
add("content-length", {
  { id = "cl", request = post({ "Content-Length: 5" }, "hello"), expect = 200, body = "hello", ref = "RFC 9112 6.2" },
  { id = "cl-zero", request = post({ "Content-Length: 0" }), expect = 200, body = "", ref = "RFC 9112 6.2" },
  { id = "cl-plus-sign", request = post({ "Content-Length: +5" }, "hello"), expect = 400, ref = "RFC 9110 8.6 (1*DIGIT) [HTTPGARDEN]" },
  { id = "cl-minus-sign", request = post({ "Content-Length: -5" }, "hello"), expect = 400, ref = "RFC 9110 8.6" },
  { id = "cl-hex", request = post({ "Content-Length: 0x5" }, "hello"), expect = 400, ref = "RFC 9110 8.6" },
  { id = "cl-exponent", request = post({ "Content-Length: 5e0" }, "hello"), expect = 400, ref = "RFC 9110 8.6" },
  { id = "cl-decimal", request = post({ "Content-Length: 5.0" }, "hello"), expect = 400, ref = "RFC 9110 8.6" },
  { id = "cl-empty", request = post({ "Content-Length:" }, "hello"), expect = 400, ref = "RFC 9110 8.6" },
  { id = "cl-inner-space", request = post({ "Content-Length: 5 5" }, "hello"), expect = 400, ref = "RFC 9110 8.6" },
  { id = "cl-ows", request = post({ "Content-Length: \t5 \t" }, "hello"), expect = 200, body = "hello", ref = "RFC 9112 5.1 (OWS)" },
  { id = "cl-leading-zeros", request = post({ "Content-Length: 005" }, "hello"), expect = 200, body = "hello", ref = "RFC 9110 8.6 (1*DIGIT)" },
  { id = "cl-list-same", request = post({ "Content-Length: 5, 5" }, "hello"), expect = 400, ref = "RFC 9110 8.6 (MAY accept; we refuse)" },
  { id = "cl-list-different", request = post({ "Content-Length: 5, 6" }, "hello!"), expect = 400, ref = "RFC 9110 8.6 (MUST reject) [WATCHFIRE]" },
  { id = "cl-duplicate-same", request = post({ "Content-Length: 5", "Content-Length: 5" }, "hello"), expect = 400, ref = "RFC 9110 8.6 (MAY accept; we refuse)" },
  { id = "cl-duplicate-different", request = post({ "Content-Length: 5", "Content-Length: 6" }, "hello!"), expect = 400, ref = "RFC 9110 8.6 (MUST reject) [WATCHFIRE CL.CL]" },
  { id = "cl-space-before-colon", request = post({ "Content-Length : 5" }, "hello"), expect = 400, ref = "RFC 9112 5.1 [KETTLE19]" },
  { id = "cl-huge", request = post({ "Content-Length: 99999999999999999999" }, "hello"), expect = 400, ref = "RFC 9112 6.3 (unparsable length) [HTTPGARDEN]" },
  { id = "cl-over-limit", request = post({ "Content-Length: 2000000" }), expect = 413, ref = "RFC 9110 15.5.14 (max_body_size 1 MB)" },
  { id = "cl-body-short", request = post({ "Content-Length: 10" }, "hello"), expect = 408, ref = "RFC 9112 6.3 (incomplete: time out)",
    note = "the body never completes; the server answers when header_timeout passes" },
  { id = "cl-get-with-body", request = r("GET / HTTP/1.1", { "Host: a", "Content-Length: 5" }, "hello"), expect = 200, body = "hello", ref = "RFC 9110 9.3.1 [KETTLE22 CL.0]" },
  { id = "no-length-post", request = post({}), expect = 200, body = "", ref = "RFC 9112 6.3 (no framing: no body)" },
  { id = "cl-underscore-name", request = post({ "Content_Length: 5" }, ""), expect = 200, body = "", ref = "not a framing header" },
})

-- ---- Transfer-Encoding and CL/TE conflicts ----
add("transfer-encoding", {
  { id = "te-chunked", request = chunked("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), expect = 200, body = "hello world", ref = "RFC 9112 7.1" },
  { id = "te-chunked-uppercase", request = post({ "Transfer-Encoding: CHUNKED" }, "5\r\nhello\r\n0\r\n\r\n"), expect = 200, body = "hello", ref = "RFC 9112 7 (case-insensitive)" },
  { id = "te-chunked-mixed-case", request = post({ "Transfer-Encoding: cHuNkEd" }, "5\r\nhello\r\n0\r\n\r\n"), expect = 200, body = "hello", ref = "RFC 9112 7" },
  { id = "cl-te", request = post({ "Content-Length: 6", "Transfer-Encoding: chunked" }, "0\r\n\r\nG"), expect = 400, ref = "RFC 9112 6.3 [WATCHFIRE] [KETTLE19 CL.TE]" },
  { id = "te-cl", request = post({ "Transfer-Encoding: chunked", "Content-Length: 3" }, "8\r\nSMUGGLED\r\n0\r\n\r\n"), expect = 400, ref = "RFC 9112 6.3 [KETTLE19 TE.CL]" },
  { id = "te-cl-zero", request = post({ "Transfer-Encoding: chunked", "Content-Length: 0" }, "0\r\n\r\n"), expect = 400, ref = "RFC 9112 6.3" },
  { id = "te-space-before-colon", request = post({ "Transfer-Encoding : chunked", "Content-Length: 5" }, "0\r\n\r\n"), expect = 400, ref = "[KETTLE19 TE.TE]" },
  { id = "te-xchunked", request = post({ "Transfer-Encoding: xchunked" }, "0\r\n\r\n"), expect = 501, ref = "RFC 9112 6.1 (SHOULD 501) [KETTLE19]" },
  { id = "te-chunked-identity", request = post({ "Transfer-Encoding: chunked, identity" }, "0\r\n\r\n"), expect = 400, ref = "RFC 9112 6.3 (chunked not final: MUST 400) [KETTLE19]" },
  { id = "te-identity-chunked", request = post({ "Transfer-Encoding: identity, chunked" }, "0\r\n\r\n"), expect = 400, ref = "[KETTLE19] (identity is not a coding)" },
  { id = "te-gzip-chunked", request = post({ "Transfer-Encoding: gzip, chunked" }, "0\r\n\r\n"), expect = 400, ref = "RFC 9112 6.1 (unsupported coding; 501 would also do)" },
  { id = "te-chunked-chunked", request = post({ "Transfer-Encoding: chunked, chunked" }, "0\r\n\r\n"), expect = 400, ref = "RFC 9112 7 (MUST NOT chunk twice)" },
  { id = "te-chunked-trailing-comma", request = post({ "Transfer-Encoding: chunked," }, "0\r\n\r\n"), expect = 400, ref = "[KETTLE19] (only exactly chunked)" },
  { id = "te-two-fields", request = post({ "Transfer-Encoding: chunked", "Transfer-Encoding: chunked" }, "0\r\n\r\n"), expect = 400, ref = "[KETTLE19 TE.TE]" },
  { id = "te-two-fields-identity", request = post({ "Transfer-Encoding: chunked", "Transfer-Encoding: identity" }, "0\r\n\r\n"), expect = 400, ref = "[KETTLE19 TE.TE]" },
  { id = "te-identity", request = post({ "Transfer-Encoding: identity" }, ""), expect = 501, ref = "RFC 9112 6.1" },
  { id = "te-gzip", request = post({ "Transfer-Encoding: gzip" }, ""), expect = 501, ref = "RFC 9112 6.1" },
  { id = "te-empty", request = post({ "Transfer-Encoding:" }, ""), expect = 501, ref = "RFC 9112 6.1" },
  { id = "te-quoted", request = post({ "Transfer-Encoding: \"chunked\"" }, "0\r\n\r\n"), expect = 501, ref = "[KETTLE19]" },
  { id = "te-chunk-typo", request = post({ "Transfer-Encoding: chunk" }, "0\r\n\r\n"), expect = 501, ref = "[KETTLE19]" },
  { id = "te-inner-space", request = post({ "Transfer-Encoding: chun ked" }, "0\r\n\r\n"), expect = 501, ref = "[KETTLE19]" },
  { id = "te-tab-before-value", request = post({ "Transfer-Encoding:\tchunked" }, "5\r\nhello\r\n0\r\n\r\n"), expect = 200, body = "hello", ref = "RFC 9112 5.1 (OWS) [KETTLE19]" },
  { id = "te-spaces-before-value", request = post({ "Transfer-Encoding:   chunked" }, "5\r\nhello\r\n0\r\n\r\n"), expect = 200, body = "hello", ref = "RFC 9112 5.1" },
  { id = "te-space-after-value", request = post({ "Transfer-Encoding: chunked " }, "5\r\nhello\r\n0\r\n\r\n"), expect = 200, body = "hello", ref = "RFC 9112 5.1" },
  { id = "te-tab-after-value", request = post({ "Transfer-Encoding: chunked\t" }, "5\r\nhello\r\n0\r\n\r\n"), expect = 200, body = "hello", ref = "RFC 9112 5.1" },
  { id = "te-vtab-before-value", request = post({ "Transfer-Encoding: \11chunked" }, "0\r\n\r\n"), expect = 400, ref = "[KETTLE19]" },
  { id = "te-formfeed-after-value", request = post({ "Transfer-Encoding: chunked\12" }, "0\r\n\r\n"), expect = 400, ref = "[KETTLE19]" },
  { id = "te-nul-in-value", request = post({ "Transfer-Encoding: chunked\0" }, "0\r\n\r\n"), expect = 400, ref = "[HTTPGARDEN]" },
  { id = "te-bare-cr-in-value", request = post({ "Transfer-Encoding: \rchunked" }, "0\r\n\r\n"), expect = 400, ref = "RFC 9112 2.2" },
  { id = "te-obs-fold", request = post({ "X-A: b", "Transfer-Encoding:", " chunked" }, "0\r\n\r\n"), expect = 400, ref = "RFC 9112 5.2 [KETTLE19]" },
  { id = "te-leading-space-line", request = post({ " Transfer-Encoding: chunked" }, "0\r\n\r\n"), expect = 400, ref = "[KETTLE19]" },
  { id = "te-name-newline", request = post({ "Transfer-Encoding", ": chunked" }, "0\r\n\r\n"), expect = 400, ref = "[KETTLE19]" },
  { id = "te-underscore-name", request = post({ "Transfer_Encoding: chunked" }, ""), expect = 200, body = "", ref = "not a framing header" },
  { id = "te-x-prefixed-name", request = post({ "X-Transfer-Encoding: chunked" }, ""), expect = 200, body = "", ref = "not a framing header" },
  { id = "te-http10", request = r("POST / HTTP/1.0", { "Transfer-Encoding: chunked" }, "5\r\nhello\r\n0\r\n\r\n"), expect = 200, body = "hello", ref = "RFC 9112 6.1 (process, then close)" },
})

-- ---- chunked framing ----
add("chunked", {
  { id = "chunk-ext", request = chunked("5;name=value\r\nhello\r\n0\r\n\r\n"), expect = 200, body = "hello", ref = "RFC 9112 7.1.1 (MUST ignore unknown)" },
  { id = "chunk-ext-no-value", request = chunked("5;name\r\nhello\r\n0\r\n\r\n"), expect = 200, body = "hello", ref = "RFC 9112 7.1.1" },
  { id = "chunk-ext-quoted", request = chunked("5;a=\"b c;d\"\r\nhello\r\n0\r\n\r\n"), expect = 200, body = "hello", ref = "RFC 9112 7.1.1" },
  { id = "chunk-ext-quoted-pair", request = chunked("5;a=\"b\\\"c\"\r\nhello\r\n0\r\n\r\n"), expect = 200, body = "hello", ref = "RFC 9110 5.6.4" },
  { id = "chunk-ext-several", request = chunked("5;a=1;b;c=\"x\"\r\nhello\r\n0\r\n\r\n"), expect = 200, body = "hello", ref = "RFC 9112 7.1.1" },
  { id = "chunk-ext-bws", request = chunked("5 ; a = 1\r\nhello\r\n0\r\n\r\n"), expect = 200, body = "hello", ref = "RFC 9112 7.1.1 (BWS)" },
  { id = "chunk-ext-bare-lf", request = chunked("5;a\nb\r\nhello\r\n0\r\n\r\n"), expect = 400, ref = "[FUNKY] (LF in chunk-ext)" },
  { id = "chunk-ext-bare-cr", request = chunked("5;a\rb\r\nhello\r\n0\r\n\r\n"), expect = 400, ref = "[FUNKY]" },
  { id = "chunk-ext-ctl", request = chunked("5;a\1\r\nhello\r\n0\r\n\r\n"), expect = 400, ref = "RFC 9112 7.1.1 (token)" },
  { id = "chunk-ext-nul", request = chunked("5;a=\0\r\nhello\r\n0\r\n\r\n"), expect = 400, ref = "[HTTPGARDEN]" },
  { id = "chunk-ext-non-tchar", request = chunked("5;a@b\r\nhello\r\n0\r\n\r\n"), expect = 400, ref = "RFC 9112 7.1.1 (token)" },
  { id = "chunk-ext-empty-name", request = chunked("5;\r\nhello\r\n0\r\n\r\n"), expect = 400, ref = "RFC 9112 7.1.1" },
  { id = "chunk-ext-unterminated-quote", request = chunked("5;a=\"b\r\nhello\r\n0\r\n\r\n"), expect = 400, ref = "RFC 9110 5.6.4" },
  { id = "chunk-size-junk", request = chunked("5 junk\r\nhello\r\n0\r\n\r\n"), expect = 400, ref = "RFC 9112 7.1 [HTTPGARDEN]" },
  { id = "chunk-size-trailing-space", request = chunked("5 \r\nhello\r\n0\r\n\r\n"), expect = 400, ref = "RFC 9112 7.1 (BWS only before ';')" },
  { id = "chunk-ext-too-long", request = chunked("5;a=" .. string.rep("x", 5000) .. "\r\nhello\r\n0\r\n\r\n"), expect = 400, ref = "our limit: 4 KB chunk line" },
  { id = "chunk-size-bare-lf", request = chunked("5\nhello\r\n0\r\n\r\n"), expect = 400, ref = "[FUNKY] (chunk lines end in CRLF)" },
  { id = "chunk-size-cr-junk", request = chunked("5\rXhello\r\n0\r\n\r\n"), expect = 400, ref = "[FUNKY]" },
  { id = "chunk-data-junk-terminator", request = chunked("5\r\nhelloXX0\r\n\r\n"), expect = 400, ref = "[FUNKY TERM.SPILL]" },
  { id = "chunk-data-bare-lf", request = chunked("5\r\nhello\n0\r\n\r\n"), expect = 400, ref = "[FUNKY]" },
  { id = "chunk-data-bare-cr", request = chunked("5\r\nhello\r0\r\n\r\n"), expect = 400, ref = "[FUNKY]" },
  { id = "chunk-data-too-long", request = chunked("5\r\nhelloworld\r\n0\r\n\r\n"), expect = 400, ref = "RFC 9112 7.1" },
  { id = "chunk-data-too-short", request = chunked("5\r\nhel\r\n0\r\n\r\n"), expect = 400, ref = "RFC 9112 7.1" },
  { id = "chunk-size-0x", request = chunked("0x5\r\nhello\r\n0\r\n\r\n"), expect = 400, ref = "RFC 9112 7.1 (HEXDIG only) [HTTPGARDEN]" },
  { id = "chunk-size-negative", request = chunked("-5\r\nhello\r\n0\r\n\r\n"), expect = 400, ref = "RFC 9112 7.1" },
  { id = "chunk-size-plus", request = chunked("+5\r\nhello\r\n0\r\n\r\n"), expect = 400, ref = "RFC 9112 7.1" },
  { id = "chunk-size-leading-space", request = chunked(" 5\r\nhello\r\n0\r\n\r\n"), expect = 400, ref = "RFC 9112 7.1" },
  { id = "chunk-size-underscore", request = chunked("0_5\r\nhello\r\n0\r\n\r\n"), expect = 400, ref = "RFC 9112 7.1 [HTTPGARDEN]" },
  { id = "chunk-size-empty", request = chunked("\r\nhello\r\n0\r\n\r\n"), expect = 400, ref = "RFC 9112 7.1" },
  { id = "chunk-size-leading-zeros", request = chunked("0005\r\nhello\r\n000\r\n\r\n"), expect = 200, body = "hello", ref = "RFC 9112 7.1 (1*HEXDIG)" },
  { id = "chunk-size-hex-upper", request = chunked("A\r\n0123456789\r\n0\r\n\r\n"), expect = 200, body = "0123456789", ref = "RFC 9112 7.1" },
  { id = "chunk-size-hex-lower", request = chunked("a\r\n0123456789\r\n0\r\n\r\n"), expect = 200, body = "0123456789", ref = "RFC 9112 7.1" },
  { id = "chunk-size-overflow", request = chunked("fffffffffffffffff1\r\nhello\r\n0\r\n\r\n"), expect = 400, ref = "[HTTPGARDEN] (more than 64 bits)" },
  { id = "chunk-size-overflow-to-small", request = chunked("10000000000000005\r\nhello\r\n0\r\n\r\n"), expect = 400, ref = "[HTTPGARDEN] (wraps to 5 in 64 bits)" },
  { id = "chunk-size-64-bit", request = chunked("ffffffffffffffff\r\nhello\r\n0\r\n\r\n"), expect = 413, ref = "max_body_size" },
  { id = "chunk-size-over-limit", request = chunked("100001\r\nhello\r\n0\r\n\r\n"), expect = 413, ref = "max_body_size (1 MB)" },
  { id = "chunks-many", request = chunked(string.rep("1\r\nx\r\n", 50) .. "0\r\n\r\n"), expect = 200, body = string.rep("x", 50), ref = "RFC 9112 7.1" },
  { id = "chunked-empty", request = chunked("0\r\n\r\n"), expect = 200, body = "", ref = "RFC 9112 7.1" },
  { id = "last-chunk-ext", request = chunked("5\r\nhello\r\n0;a=1\r\n\r\n"), expect = 200, body = "hello", ref = "RFC 9112 7.1" },
  { id = "last-chunk-missing", request = chunked("5\r\nhello\r\n"), expect = 408, ref = "incomplete: time out" },
  { id = "last-chunk-bare-lf-end", request = chunked("5\r\nhello\r\n0\r\n\n"), expect = 400, ref = "[FUNKY]" },
  { id = "last-chunk-all-lf", request = chunked("5\r\nhello\r\n0\n\n"), expect = 400, ref = "[FUNKY]" },
  { id = "trailer", request = chunked("5\r\nhello\r\n0\r\nX-T: v\r\n\r\n"), expect = 200, body = "hello", ref = "RFC 9112 7.1.2" },
  { id = "trailers-two", request = chunked("5\r\nhello\r\n0\r\nX-T: v\r\nX-U:w\r\n\r\n"), expect = 200, body = "hello", ref = "RFC 9112 7.1.2" },
  { id = "trailer-content-length", request = chunked("5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n"), expect = 200, body = "hello", ref = "RFC 9110 6.5.1 (not framing)" },
  { id = "trailer-space-before-colon", request = chunked("5\r\nhello\r\n0\r\nX-T : v\r\n\r\n"), expect = 400, ref = "RFC 9112 5.1" },
  { id = "trailer-obs-fold", request = chunked("5\r\nhello\r\n0\r\nX-T: v\r\n w\r\n\r\n"), expect = 400, ref = "RFC 9112 5.2" },
  { id = "trailer-no-colon", request = chunked("5\r\nhello\r\n0\r\nX-T v\r\n\r\n"), expect = 400, ref = "RFC 9112 5" },
  { id = "trailer-bare-lf", request = chunked("5\r\nhello\r\n0\r\nX-T: v\n\r\n"), expect = 400, ref = "[FUNKY]" },
  { id = "trailer-ctl", request = chunked("5\r\nhello\r\n0\r\nX-T: a\1b\r\n\r\n"), expect = 400, ref = "RFC 9110 5.5" },
})

local seen = {}
for _, v in ipairs(V) do
  assert(not seen[v.id], "duplicate vector id " .. v.id)
  seen[v.id] = true
end

return V
