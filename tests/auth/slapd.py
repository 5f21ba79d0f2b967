"""A real OpenLDAP `slapd` (Debian's) for the LDAP tests, with a config and data of its own.

Never the system's slapd: the test's own slapd.conf, database directory and loopback ports.
People, a service account and nested entries are loaded before it starts (`slapadd`); the
groups are added once it runs (`ldapadd`), so the memberof overlay writes each member's
`memberOf`, as a directory in service has it. slapd logs every operation (`-d stats`), so a
test can count the binds a user cost.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import ldap3

from tests.certs import CA
from tests.servers import free_port, require_tool, stop_process

SUFFIX = "dc=example,dc=org"
ROOT_DN, ROOT_PW = f"cn=admin,{SUFFIX}", "admin-secret"
SERVICE_DN, SERVICE_PW = f"cn=searcher,ou=services,{SUFFIX}", "searcher-secret"
PEOPLE = f"ou=people,{SUFFIX}"
BUILDERS = f"cn=builders,ou=groups,{SUFFIX}"
READERS = f"cn=readers,ou=groups,{SUFFIX}"
# uid -> (the entry's DN, password). nina sits one level deeper: only a subtree search finds her.
USERS = {
    "lara": (f"uid=lara,{PEOPLE}", "lara-ldap-pw"),
    "milo": (f"uid=milo,{PEOPLE}", "milo-ldap-pw"),
    "nina": (f"uid=nina,ou=staff,{PEOPLE}", "nina-ldap-pw"),
}
GROUPS = {BUILDERS: ["lara", "nina"], READERS: ["milo"]}

_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile {dir}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
{tls}
database mdb
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_pw}
directory {dir}/db
overlay memberof
# Passwords: only to bind with. Everything else: the service account reads, anonymous nothing,
# so a login that skipped the service bind would find nobody.
access to attrs=userPassword by anonymous auth by self write by * none
access to * by dn.exact="{service_dn}" read by self read by * none
"""


def _entries() -> str:
    parts = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n"]
    for ou in (PEOPLE, f"ou=staff,{PEOPLE}", f"ou=services,{SUFFIX}", f"ou=groups,{SUFFIX}"):
        name = ou.split(",", 1)[0].split("=", 1)[1]
        parts.append(f"dn: {ou}\nobjectClass: organizationalUnit\nou: {name}\n")
    parts.append(f"dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"
                 f"cn: searcher\nuserPassword: {SERVICE_PW}\n")
    for uid, (dn, password) in USERS.items():
        parts.append(f"dn: {dn}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n"
                     f"userPassword: {password}\n")
    return "\n".join(parts)


class Slapd:
    """slapd on free loopback ports: `url` (plain LDAP, StartTLS offered) and `ldaps_url`,
    with a certificate for 127.0.0.1 that `ca` signed (written to `ca_path`)."""

    def __init__(self, workdir: Path) -> None:
        self.binary = require_tool("slapd")
        self.workdir = workdir
        self.port, self.ldaps_port = free_port(), free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.ldaps_url = f"ldaps://127.0.0.1:{self.ldaps_port}"
        self.ca = CA("ldap test CA")
        self.ca_path = self.ca.write(workdir / "ldap-ca.crt")
        self.log_path = workdir / "slapd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Slapd:
        cert, key = self.ca.issue("localhost").write(self.workdir, "ldap-server")
        tls = (f"TLSCACertificateFile {self.ca_path}\nTLSCertificateFile {cert}\nTLSCertificateKeyFile {key}")
        (self.workdir / "db").mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "slapd.conf"
        conf.write_text(_CONF.format(dir=self.workdir, tls=tls, suffix=SUFFIX, root_dn=ROOT_DN, root_pw=ROOT_PW,
                                     service_dn=SERVICE_DN))
        data = self.workdir / "people.ldif"
        data.write_text(_entries())
        subprocess.run([require_tool("slapadd"), "-f", str(conf), "-l", str(data)], check=True,
                       capture_output=True, timeout=60)
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "-f", str(conf), "-h", f"{self.url} {self.ldaps_url}",
                                      "-d", "stats"], stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"slapd did not answer on {self.url} within {timeout}s:\n{self.log()}")
            time.sleep(0.05)
        groups = "\n".join(
            f"dn: {dn}\nobjectClass: groupOfNames\ncn: {dn.split(',')[0][3:]}\n"
            + "".join(f"member: {USERS[uid][0]}\n" for uid in members)
            for dn, members in GROUPS.items())
        subprocess.run([require_tool("ldapadd"), "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PW],
                       input=groups.encode(), check=True, capture_output=True, timeout=30)
        return self

    def _answers(self) -> bool:
        try:
            connection = ldap3.Connection(ldap3.Server(self.url, connect_timeout=1), ROOT_DN, ROOT_PW)
            ok = bool(connection.bind())
            connection.unbind()
            return ok
        except ldap3.core.exceptions.LDAPException:
            return False

    def set_password(self, uid: str, password: str) -> None:
        subprocess.run([require_tool("ldappasswd"), "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PW,
                        "-s", password, USERS[uid][0]], check=True, capture_output=True, timeout=30)

    def binds_of(self, uid: str) -> int:
        """How many times someone bound as the user so far (slapd's stats log)."""
        return len(re.findall(rf'BIND dn="{re.escape(USERS[uid][0])}" method=128', self.log()))

    def stop(self) -> None:
        stop_process(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
