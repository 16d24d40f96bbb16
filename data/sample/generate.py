#!/usr/bin/env python3
"""Generate the sample mirror description (data/sample/mirrors.toml).

Host names and their countries are real: they come from the mirror lists
that Debian's python-apt-common package installs
(/usr/share/python-apt/templates/Debian.mirrors and Ubuntu.mirrors, where a
`#LOC:CC` line is followed by that country's mirror URLs). Everything else is
invented, deterministically (seeded random): bandwidths, which hosts carry
what of Fedora and EPEL, URL paths, netblocks (only from the documentation
and benchmarking ranges 198.18.0.0/15 and 2001:db8::/32), ASNs (only from
the private-use range 64512-65534), private and country-restricted hosts,
address families.

Usage:
    python3 data/sample/generate.py > data/sample/mirrors.toml
    python3 data/sample/generate.py --netblocks data/sample/global_netblocks.txt \
        > data/sample/mirrors.toml
    python3 data/sample/generate.py --make-tree data/sample/tree

--netblocks also writes the prefix -> ASN table the server loads with
--asn-netblocks, in MirrorManager's global_netblocks.txt format (one
`prefix ASN` per line, IPv4 then IPv6). For each ASN a sample host has, it
lists a /24 from 198.19.0.0/16 (distinct per ASN) and, for every other ASN, a
/48 from 2001:db8:ff00::/40. None of them overlaps a host's own netblocks
(198.18.0.0/16 and 2001:db8:100::/40), so a client address in one of them is
matched to the host by ASN, not by netblock. A few extra lines from the
other documentation ranges (ASNs 64496-64511, reserved for documentation)
carry no sample host, as most lines of a real table do. The table adds no
random draws, so mirrors.toml stays byte-identical with or without the flag.

--make-tree creates each repository directory of the sample under the given
master tree, runs `createrepo_c` on it (Debian package createrepo-c; the
directories are empty, so the metadata describes zero packages) and deletes
every generated file but repodata/repomd.xml, the only one cache-builder
reads. Standard library only; runs with plain python3.
"""

import argparse
import ipaddress
import json
import os
import random
import shutil
import subprocess
import sys
from urllib.parse import urlsplit

TEMPLATES = [
    "/usr/share/python-apt/templates/Debian.mirrors",
    "/usr/share/python-apt/templates/Ubuntu.mirrors",
]
SEED = 20250401

FEDORA = "Fedora Linux"
EPEL = "EPEL"
CATEGORIES = [(FEDORA, "fedora/linux"), (EPEL, "epel")]

# (name, arch, directory, disabled). fedora-40 is a retired release: it is
# disabled and its directory is no longer in the master tree.
REPOSITORIES = (
    [
        (f"fedora-{v}", arch, f"fedora/linux/releases/{v}/Everything/{arch}/os", False)
        for v in (41, 42)
        for arch in ("x86_64", "aarch64")
    ]
    + [
        (
            "fedora-rawhide",
            "x86_64",
            "fedora/linux/development/rawhide/Everything/x86_64/os",
            False,
        )
    ]
    + [("epel-9", arch, f"epel/9/Everything/{arch}", False) for arch in ("x86_64", "aarch64")]
    + [("fedora-40", "x86_64", "fedora/linux/releases/40/Everything/x86_64/os", True)]
)
REDIRECTS = {"rawhide": "fedora-rawhide", "epel9": "epel-9"}

# Second-level labels under which organisations register (example.co.uk).
SECOND_LEVEL = {"ac", "co", "com", "edu", "net", "org", "gov", "or", "ne"}


def q(s):
    """A TOML basic string (JSON escaping is valid TOML for our ASCII)."""
    return json.dumps(s)


def read_templates():
    """hostname -> {country, schemes seen, path prefix}, first listing wins."""
    hosts = {}
    for path in TEMPLATES:
        country = None
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line.startswith("#LOC:"):
                    country = line[5:].strip().upper()
                    continue
                if not line or line.startswith("#") or country is None:
                    continue
                parts = urlsplit(line)
                if parts.scheme not in ("http", "https", "ftp") or not parts.hostname:
                    continue  # e.g. mirror://mirrors.ubuntu.com/mirrors.txt
                name = parts.hostname.lower()
                # The archive's own directory (debian/, ubuntu/) is replaced
                # by fedora/ and epel/ beside it.
                prefix = "/".join(p for p in parts.path.split("/")[:-2] if p)
                h = hosts.setdefault(
                    name, {"country": country, "schemes": set(), "prefix": prefix}
                )
                h["schemes"].add(parts.scheme)
    return hosts


def site_of(name):
    labels = name.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def describe(hosts, asn_hosts=None):
    """The description text. When `asn_hosts` is a dict, it is filled with
    ASN -> [(host name, its netblocks)] for global_netblocks()."""
    rng = random.Random(SEED)
    names = sorted(hosts, key=lambda n: (hosts[n]["country"], n))

    by_site = {}
    for n in names:
        by_site.setdefault(site_of(n), []).append(n)
    sites = {s: ns for s, ns in by_site.items() if len(ns) >= 2}
    site_asn = {s: 64512 + i for i, s in enumerate(sorted(sites))}

    # Pick the special hosts up front, so their number is fixed.
    shuffled = names[:]
    rng.shuffle(shuffled)
    private = set(shuffled[:6])
    restricted = set(shuffled[6:14])
    with_netblocks = set(shuffled[:60])

    v4_next = [0]
    v6_next = [0x100]

    def netblocks():
        i = v4_next[0]
        v4_next[0] += 1
        out = [f"198.{18 + i // 256}.{i % 256}.0/24"]
        if rng.random() < 0.5:
            out.append(f"2001:db8:{v6_next[0]:x}::/48")
            v6_next[0] += 1
        return out

    def host_lines(name):
        h = hosts[name]
        cc = h["country"]
        lines = [f"name = {q(name)}", f"country = {q(cc)}"]
        bandwidth = rng.choices(
            [10, 100, 200, 500, 1000, 2000, 10000], weights=[5, 20, 15, 20, 25, 10, 5]
        )[0]
        lines.append(f"bandwidth = {bandwidth}")
        if name in private:
            lines.append("private = true")
        if name in restricted:
            allowed = [cc]
            if rng.random() < 0.5:
                allowed.append(rng.choice(["DE", "FR", "US", "JP", "BR", "ZA"]))
            lines.append(f"allowed_countries = [{', '.join(q(c) for c in sorted(set(allowed)))}]")
        if name in with_netblocks or name in private:
            blocks = netblocks()
            lines.append(f"netblocks = [{', '.join(q(n) for n in blocks)}]")
            site = site_of(name)
            asn = site_asn.get(site) or 65000 + v4_next[0]
            lines.append(f"asns = [{asn}]")
            if asn_hosts is not None:
                asn_hosts.setdefault(asn, []).append((name, blocks))
            if rng.random() < 0.2:
                lines.append("asn_clients = false")
        r = rng.random()
        if r < 0.30:
            lines.append('families = "both"')
        elif r < 0.40:
            lines.append('families = "ipv4"')
        elif r < 0.42:
            lines.append('families = "ipv6"')

        if "https" in h["schemes"] or rng.random() < 0.45:
            schemes = ["https", "http"]
        else:
            schemes = ["http"]
        if name.startswith("ftp.") and rng.random() < 0.5:
            schemes.append("ftp")
        if rng.random() < 0.2:
            schemes.append("rsync")
        base = "/" + h["prefix"] if h["prefix"] else ""

        def cat(category, topdir, extra=""):
            urls = ", ".join(q(f"{s}://{name}{base}/{topdir}") for s in schemes)
            return f"  {{ category = {q(category)}, urls = [{urls}]{extra} }},"

        r = rng.random()
        if r < 0.70:
            cats = [cat(FEDORA, "fedora/linux"), cat(EPEL, "epel")]
        elif r < 0.82:
            cats = [cat(FEDORA, "fedora/linux", ', exclude = ["development"]'), cat(EPEL, "epel")]
        elif r < 0.90:
            cats = [cat(EPEL, "epel")]
        elif r < 0.95:
            cats = [cat(FEDORA, "fedora/linux", ', include = ["releases/42"]')]
        else:
            cats = [cat(FEDORA, "fedora/linux")]
        lines.append("categories = [")
        lines.extend(cats)
        lines.append("]")
        return lines

    out = [
        "# Sample mirror description for cache-builder.",
        "# GENERATED by data/sample/generate.py from the python-apt-common mirror",
        "# lists; edit the script, not this file. See data/README.md.",
        "",
        'master_tree = "tree"',
        "max_alternates = 4",
        "max_alternate_age_days = 30",
        'continent_overrides = { TR = "EU", CY = "EU" }',
        'netblock_countries = { "198.51.100.0/24" = "DE", "2001:db8:ffff::/48" = "FR" }',
        "repository_redirects = { "
        + ", ".join(f"{k} = {q(v)}" for k, v in sorted(REDIRECTS.items()))
        + " }",
        "",
    ]
    for name, topdir in CATEGORIES:
        out += ["[[categories]]", f"name = {q(name)}", f"topdir = {q(topdir)}", ""]
    for name, arch, directory, disabled in REPOSITORIES:
        out += [
            "[[repositories]]",
            f"name = {q(name)}",
            f"arch = {q(arch)}",
            f"directory = {q(directory)}",
        ]
        if disabled:
            out.append("disabled = true")
        out.append("")
    for name in names:
        if site_of(name) in sites:
            continue
        out.append("[[hosts]]")
        out += host_lines(name)
        out.append("")
    for site in sorted(sites):
        out += ["[[sites]]", f"name = {q(site)}", ""]
        for name in sites[site]:
            out.append("[[sites.hosts]]")
            out += host_lines(name)
            out.append("")
    return "\n".join(out)


# Lines of the ASN table that match no sample host: documentation prefixes
# with documentation ASNs (RFC 5398), the way most lines of a real table
# belong to networks without a mirror.
EXTRA_NETBLOCKS = [
    ("192.0.2.0/24", 64496),
    ("203.0.113.0/24", 64497),
    ("2001:db8:fe00::/40", 64498),
]


def global_netblocks(asn_hosts):
    """The prefix -> ASN table text for the ASNs of the sample hosts."""
    own = [ipaddress.ip_network(b) for hs in asn_hosts.values() for _, bs in hs for b in bs]
    v4, v6 = [], []
    for i, asn in enumerate(sorted(asn_hosts)):
        if i >= 256:
            raise SystemExit("more than 256 ASNs: 198.19.0.0/16 has no /24 left")
        v4.append((ipaddress.ip_network(f"198.19.{i}.0/24"), asn))
        if i % 2 == 0:
            v6.append((ipaddress.ip_network(f"2001:db8:ff{i:02x}::/48"), asn))
    for prefix, asn in EXTRA_NETBLOCKS:
        net = ipaddress.ip_network(prefix)
        (v4 if net.version == 4 else v6).append((net, asn))
    for net, asn in v4 + v6:
        # The point of the table is matching by ASN where netblocks do not
        # match: an overlap would hide that.
        clash = [o for o in own if o.version == net.version and o.overlaps(net)]
        if clash:
            raise SystemExit(f"{net} (AS{asn}) overlaps host netblock {clash[0]}")
    v4.sort(key=lambda e: e[0])
    v6.sort(key=lambda e: e[0])
    return "".join(f"{net} {asn}\n" for net, asn in v4 + v6)


def make_tree(root):
    for _, _, directory, disabled in REPOSITORIES:
        if disabled:
            continue
        d = os.path.join(root, directory)
        os.makedirs(d, exist_ok=True)
        repodata = os.path.join(d, "repodata")
        if os.path.exists(repodata):
            shutil.rmtree(repodata)
        subprocess.run(["createrepo_c", "--quiet", "--no-database", d], check=True)
        for f in os.listdir(repodata):
            if f != "repomd.xml":
                os.remove(os.path.join(repodata, f))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--make-tree", metavar="DIR", help="create the sample master tree in DIR")
    p.add_argument(
        "--netblocks",
        metavar="FILE",
        help="also write the prefix -> ASN table (global_netblocks.txt format) to FILE",
    )
    args = p.parse_args()
    if args.make_tree:
        make_tree(args.make_tree)
        return
    asn_hosts = {} if args.netblocks else None
    sys.stdout.write(describe(read_templates(), asn_hosts))
    if args.netblocks:
        with open(args.netblocks, "w", encoding="ascii") as f:
            f.write(global_netblocks(asn_hosts))


if __name__ == "__main__":
    main()
