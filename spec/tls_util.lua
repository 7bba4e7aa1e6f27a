-- Shared by the TLS specs (tls_engine_spec, net_tls_spec): a test CA and certificates made by
-- `openssl` at test time in a folder of the spec's.
local H = require("helper")

local T = {}

T.OPENSSL = "/usr/bin/openssl"


-- s quoted for /bin/sh
function T.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end


-- runs cmd, which must succeed; -> its output
function T.sh_ok(cmd)
  local out, rc = H.sh(cmd)
  assert(rc == 0, cmd .. "\n" .. out)
  return out
end


-- a key and a certificate in dir for names (SANs, e.g. "DNS:a.test,IP:127.0.0.1") signed by
-- dir's CA: -> cert, key paths (dir/NAME.pem, dir/NAME.key)
function T.issue(dir, name, sans)
  local ext = H.write_file(dir .. "/" .. name .. ".ext", "basicConstraints=CA:FALSE\n" ..
    "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=" .. sans .. "\n")
  local key, csr, crt = dir .. "/" .. name .. ".key", dir .. "/" .. name .. ".csr", dir .. "/" .. name .. ".pem"
  T.sh_ok(T.OPENSSL .. " req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " .. key ..
    " -out " .. csr .. " -subj /CN=" .. name)
  T.sh_ok(T.OPENSSL .. " x509 -req -in " .. csr .. " -CA " .. dir .. "/ca.pem -CAkey " .. dir ..
    "/ca.key -CAcreateserial -days 2 -out " .. crt .. " -extfile " .. ext)
  return crt, key
end


-- a new folder with the test CA (ca.pem, ca.key) and certificates for localhost
-- (DNS:localhost, IP:127.0.0.1) and sni.test -> the folder
function T.certs()
  local dir = H.tmpdir()
  T.sh_ok(T.OPENSSL .. " req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " ..
    dir .. "/ca.key -out " .. dir .. "/ca.pem -days 2 -subj " .. T.q("/CN=luacluster test CA"))
  T.issue(dir, "localhost", "DNS:localhost,IP:127.0.0.1")
  T.issue(dir, "sni.test", "DNS:sni.test")
  return dir
end


return T
