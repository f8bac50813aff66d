"""The checked-in [lxd] sample config matches the options in the code."""
import os
import subprocess
import sys
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
SAMPLE = os.path.join(REPO, "etc", "nova-lxd-py", "nova.conf.sample")


class SampleConfigTest(unittest.TestCase):
    def test_sample_is_current(self):
        generator = os.path.join(os.path.dirname(sys.executable), "oslo-config-generator")
        if not os.path.exists(generator):
            self.skipTest("oslo-config-generator not installed")
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "sample")
            subprocess.run([generator, "--namespace", "nova_lxd_py", "--wrap-width", "79",
                            "--output-file", out], check=True, cwd=REPO)
            with open(out) as new, open(SAMPLE) as old:
                self.assertEqual(old.read(), new.read(),
                                 "regenerate with: oslo-config-generator --config-file "
                                 "etc/nova-lxd-py/nova-lxd-py-config-generator.conf")


if __name__ == "__main__":
    unittest.main()
