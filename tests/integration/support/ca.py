"""A throwaway certificate authority for loopback TLS servers (openssl CLI, no Python deps)."""
import os
import subprocess


def _run(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class TestCA:
    __test__ = False  # not a pytest class

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.ca_file = os.path.join(directory, "ca.pem")
        self.ca_key = os.path.join(directory, "ca.key")
        self._serial = 1
        _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.ca_key,
             "-out", self.ca_file, "-days", "2", "-subj", "/CN=authproxy test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(self, names):
        """Returns (certfile, keyfile) valid for the DNS names and 127.0.0.1."""
        self._serial += 1
        base = os.path.join(self.dir, "srv%d" % self._serial)
        san = ",".join(["DNS:%s" % n for n in names] + ["IP:127.0.0.1"])
        ext = base + ".ext"
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n" % san)
        _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", base + ".key",
             "-out", base + ".csr", "-subj", "/CN=%s" % names[0])
        _run("openssl", "x509", "-req", "-in", base + ".csr", "-CA", self.ca_file, "-CAkey",
             self.ca_key, "-set_serial", str(self._serial), "-out", base + ".pem", "-days", "2",
             "-extfile", ext)
        return base + ".pem", base + ".key"
