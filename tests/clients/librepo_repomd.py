#!/usr/bin/python3
"""Download repomd.xml through a metalink with librepo and report the mirror.

Usage: librepo_repomd.py METALINK_URL DESTDIR

Run with Debian's /usr/bin/python3 (python3-librepo). librepo checks the
downloaded repomd.xml against the metalink's hashes (and alternates) and
moves on to the next mirror when it does not match. Prints, one per line:

    version=<librepo version>
    used=<base URL of the mirror the repository came from>
    mirror=<base URL>          (each mirror from the metalink, in order)
    repomd=<path of the downloaded repomd.xml>

On failure prints librepo's error to stderr and exits 1.
"""

import sys

import librepo


def main():
    url, dest = sys.argv[1], sys.argv[2]
    h = librepo.Handle()
    h.repotype = librepo.LR_YUMREPO
    h.metalinkurl = url
    h.destdir = dest
    h.yumdlist = []  # repomd.xml only
    h.checksum = True
    h.connecttimeout = 10
    h.maxmirrortries = 0  # every mirror
    try:
        result = h.perform()
    except librepo.LibrepoException as e:
        print("librepo error: %s" % (e.args,), file=sys.stderr)
        return 1
    repo = result.getinfo(librepo.LRR_YUM_REPO)
    print("version=%s" % librepo.VERSION)
    print("used=%s" % repo["url"])
    for m in h.getinfo(librepo.LRI_MIRRORS) or []:
        print("mirror=%s" % m)
    print("repomd=%s" % repo["repomd"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
