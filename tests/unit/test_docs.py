"""The README's configuration reference is the binary's own table.

`mspflow config-reference` prints the typed config table of core/config.c;
the README embeds it between markers.  If a key is added, renamed or its
default changes, this fails until the README is regenerated.
"""
import os
import subprocess
import sys
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ReadmeConfigReference(unittest.TestCase):
    def test_readme_matches_binary(self):
        out = subprocess.run([os.environ["MSPFLOW_BIN"], "config-reference"],
                             check=True, capture_output=True, text=True).stdout.strip()
        with open(os.path.join(ROOT, "README.md")) as f:
            readme = f.read()
        begin = readme.index("<!-- config-reference:begin")
        begin = readme.index("\n", begin) + 1
        end = readme.index("<!-- config-reference:end -->")
        self.assertEqual(readme[begin:end].strip(), out,
                         "README configuration reference is stale: paste `mspflow config-reference`")

    def test_openapi_matches_routes(self):
        """Every routed (path, method) is documented and every documented one is routed."""
        out = subprocess.run([os.environ["MSPFLOW_BIN"], "routes"], check=True, capture_output=True,
                             text=True).stdout.split("\n")
        routed = {(path, method.lower()) for _, method, path in (l.split() for l in out if l.strip())}
        documented, path = set(), None
        with open(os.path.join(ROOT, "portal-api", "openapi.yaml")) as f:
            in_paths = False
            for line in f:
                if line.startswith("paths:"):
                    in_paths = True
                    continue
                if in_paths and line and not line.startswith(" "):
                    break
                if in_paths and line.startswith("  /"):
                    path = line.strip().rstrip(":")
                elif in_paths and path and line.startswith("    ") and not line.startswith("     "):
                    verb = line.strip().rstrip(":")
                    if verb in ("get", "put", "post", "patch", "delete", "head", "options"):
                        documented.add((path, verb))
        self.assertTrue(routed)
        self.assertEqual(routed, documented)

    def test_usage_and_unknown_command(self):
        r = subprocess.run([os.environ["MSPFLOW_BIN"], "frobnicate"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command", r.stderr)
        r = subprocess.run([os.environ["MSPFLOW_BIN"], "serve", "--bogus"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)

    def test_bad_config_file_is_refused(self):
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write("workers = many\n")
        try:
            r = subprocess.run([os.environ["MSPFLOW_BIN"], "serve", "--config", f.name],
                               capture_output=True, text=True, timeout=10)
        finally:
            os.unlink(f.name)
        self.assertEqual(r.returncode, 1)
        self.assertIn("workers", r.stderr)

    def test_version_names_libraries(self):
        out = subprocess.run([os.environ["MSPFLOW_BIN"], "version"], check=True,
                             capture_output=True, text=True).stdout
        for lib in ("mspflow", "libevent", "libpq", "openssl", "jansson", "libsodium", "libcurl"):
            self.assertIn(lib, out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
