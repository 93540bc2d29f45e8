"""Extra certificates and CRLs from the test CA of cassandra_node.make_pki,
for the reload tests (test_reload.py): fresh client certificates with new
serials (a rotated certificate) and CRLs made with `openssl ca` and a
throwaway CA database.  Like cassandra_node, everything is made with the
openssl command line; the session PKI itself is never modified.
"""

import os
import shutil
import subprocess
import tempfile

from cassandra_node import _LEAF_EXT


def openssl(*args, cwd=None, input=None):
    """Run openssl; return its stdout, or raise with its output."""
    r = subprocess.run(("openssl",) + args, cwd=cwd, input=input,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args),
                                                       r.stdout))
    return r.stdout


def cert_serial(path):
    """The serial number of the certificate in ${path}, as an int."""
    out = openssl("x509", "-in", path, "-noout", "-serial")
    assert out.startswith("serial="), out
    return int(out.strip().split("=", 1)[1], 16)


def _ca_paths(pki, ca):
    d = pki["dir"]
    return os.path.join(d, ca + ".crt"), os.path.join(d, ca + ".key")


def make_leaf(pki, directory, name, cn="cqltunnel-client",
              eku="clientAuth", ca="ca"):
    """A new RSA-2048 key (unencrypted PKCS#8, mode 0600) and certificate
    with a new random serial, signed by the test CA (or ${ca}, e.g.
    "other-ca"); written as ${directory}/${name}.crt and .key.  Returns
    {"crt", "key", "serial" (int)}."""
    ca_crt, ca_key = _ca_paths(pki, ca)
    os.makedirs(directory, exist_ok=True)
    t = tempfile.mkdtemp(prefix=".leaf.", dir=directory)
    try:
        with open(os.path.join(t, "leaf.ext"), "w") as f:
            f.write(_LEAF_EXT.format(eku=eku))
        openssl("req", "-newkey", "rsa:2048", "-noenc", "-keyout",
                "leaf.key", "-out", "leaf.csr", "-subj", "/CN=" + cn,
                "-config", "/dev/null", cwd=t)
        openssl("x509", "-req", "-in", "leaf.csr", "-CA", ca_crt,
                "-CAkey", ca_key, "-set_serial", "0x" + os.urandom(12).hex(),
                "-days", "3650", "-sha256", "-extfile", "leaf.ext",
                "-out", "leaf.crt", cwd=t)
        os.chmod(os.path.join(t, "leaf.key"), 0o600)
        crt = os.path.join(directory, name + ".crt")
        key = os.path.join(directory, name + ".key")
        os.replace(os.path.join(t, "leaf.crt"), crt)
        os.replace(os.path.join(t, "leaf.key"), key)
    finally:
        shutil.rmtree(t, ignore_errors=True)
    return {"crt": crt, "key": key, "serial": cert_serial(crt)}


_CA_CONF = """\
[ca]
default_ca = test_ca

[test_ca]
dir = {dir}
database = $dir/index.txt
crlnumber = $dir/crlnumber
certificate = {ca_crt}
private_key = {ca_key}
default_md = sha256
default_crl_days = 30
crl_extensions = crl_ext

[crl_ext]
authorityKeyIdentifier = keyid:always
"""


def make_crl(pki, path, revoke=(), ca="ca"):
    """Write to ${path} a PEM CRL signed by the test CA (or ${ca}) that
    revokes the certificate files in ${revoke} (none: an empty CRL), valid
    for 30 days.  Uses `openssl ca -revoke` / `-gencrl` with a throwaway
    database.  Returns ${path}."""
    ca_crt, ca_key = _ca_paths(pki, ca)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    t = tempfile.mkdtemp(prefix=".crl.",
                         dir=os.path.dirname(os.path.abspath(path)))
    try:
        open(os.path.join(t, "index.txt"), "w").close()
        with open(os.path.join(t, "crlnumber"), "w") as f:
            f.write("1000\n")
        conf = os.path.join(t, "ca.cnf")
        with open(conf, "w") as f:
            f.write(_CA_CONF.format(dir=t, ca_crt=ca_crt, ca_key=ca_key))
        for cert in revoke:
            openssl("ca", "-config", conf, "-revoke", cert,
                    "-crl_reason", "keyCompromise", cwd=t)
        openssl("ca", "-config", conf, "-gencrl", "-out", "crl.pem", cwd=t)
        os.replace(os.path.join(t, "crl.pem"), path)
    finally:
        shutil.rmtree(t, ignore_errors=True)
    return path


def crl_serials(path):
    """The serials (ints) a PEM CRL revokes, read back with openssl."""
    out = openssl("crl", "-in", path, "-noout", "-text")
    return {int(line.split(":", 1)[1].strip(), 16)
            for line in out.splitlines()
            if line.strip().startswith("Serial Number:")}


# --- server certificates a node should never present (test_hostile.py) ---

_SERVER_EXT = _LEAF_EXT.format(eku="serverAuth") + "subjectAltName = {san}\n"
_INTERMEDIATE_EXT = """\
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""

_SIGN_CONF = """\
[ca]
default_ca = sign

[sign]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir
serial = $dir/serial
certificate = {ca_crt}
private_key = {ca_key}
default_md = sha256
policy = anything
copy_extensions = none
unique_subject = no

[anything]
commonName = supplied
"""


def make_server_cert(pki, directory, name, san="IP:127.0.0.1",
                     cn="localhost", start=None, end=None, ca="ca",
                     ca_files=None, self_signed=False, ext=None):
    """A new RSA-2048 key and server certificate (serverAuth, ${san})
    written as ${directory}/${name}.crt and .key.  Signed by the test CA
    (or ${ca}, or the (crt, key) pair ${ca_files}), or self-signed; with
    ${start}/${end} (openssl's YYYYMMDDHHMMSSZ) as validity, so that
    expired and not-yet-valid certificates can be made.  Returns
    {"crt", "key"}."""
    os.makedirs(directory, exist_ok=True)
    crt = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    t = tempfile.mkdtemp(prefix=".srv.", dir=directory)
    try:
        with open(os.path.join(t, "leaf.ext"), "w") as f:
            f.write(ext or _SERVER_EXT.format(san=san))
        openssl("req", "-newkey", "rsa:2048", "-noenc", "-keyout",
                "leaf.key", "-out", "leaf.csr", "-subj", "/CN=" + cn,
                "-config", "/dev/null", cwd=t)
        if self_signed:
            ca_crt, ca_key = os.path.join(t, "leaf.crt"), \
                os.path.join(t, "leaf.key")
        else:
            ca_crt, ca_key = ca_files or _ca_paths(pki, ca)
        open(os.path.join(t, "index.txt"), "w").close()
        with open(os.path.join(t, "serial"), "w") as f:
            f.write(os.urandom(12).hex() + "\n")
        conf = os.path.join(t, "sign.cnf")
        with open(conf, "w") as f:
            f.write(_SIGN_CONF.format(dir=t, ca_crt=ca_crt, ca_key=ca_key))
        args = ["ca", "-batch", "-notext", "-config", conf, "-in",
                "leaf.csr", "-out", "leaf.crt", "-extfile", "leaf.ext"]
        if self_signed:
            args.append("-selfsign")
        args += ["-startdate", start or "20200101000000Z",
                 "-enddate", end or "20491231235959Z"]
        openssl(*args, cwd=t)
        os.chmod(os.path.join(t, "leaf.key"), 0o600)
        os.replace(os.path.join(t, "leaf.crt"), crt)
        os.replace(os.path.join(t, "leaf.key"), key)
    finally:
        shutil.rmtree(t, ignore_errors=True)
    return {"crt": crt, "key": key}


def make_intermediate_ca(pki, directory, name="intermediate"):
    """An intermediate CA signed by the test CA: {"crt", "key"}."""
    return make_server_cert(pki, directory, name, cn="cqltunnel test "
                            "intermediate CA", ext=_INTERMEDIATE_EXT)
