# Copyright nova-lxd-py developers. Licensed under the Apache License, Version 2.0.
import setuptools


class Distribution(setuptools.Distribution):
    """pbr finds packages by directory: the driver shim inside nova's namespace is
    listed as the path nova/virt/lxd_py in setup.cfg; name it as a package."""

    def finalize_options(self):
        super().finalize_options()
        if self.packages:
            self.packages = [p.replace("/", ".") for p in self.packages]


setuptools.setup(setup_requires=["pbr>=6.0"], pbr=True, distclass=Distribution)
