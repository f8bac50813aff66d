"""Errors of the driver, as nova exceptions so users see their message.

nova records the message of a NovaException as the instance fault, so each
message names the thing the user or operator has to fix.
"""
from __future__ import annotations

from nova.i18n import _

from nova import exception as nova_exception


class RuntimeUnavailable(nova_exception.HypervisorUnavailable,
                         nova_exception.VirtDriverNotReady):
    # VirtDriverNotReady too: nova's periodic tasks then skip a round with one
    # log line instead of a traceback while the runtime is away.
    msg_fmt = _("Cannot reach the container runtime at %(endpoint)s: %(reason)s. "
                "Is nova-lxd-runtime (or LXD) running, and is [lxd] endpoint right?")


class RuntimeConfigError(nova_exception.InvalidConfiguration):
    msg_fmt = _("Invalid [lxd] configuration: %(reason)s")


class RuntimeIncompatible(nova_exception.NovaException):
    msg_fmt = _("The container runtime at %(endpoint)s lacks API extensions "
                "%(missing)s that the driver needs.")


class InvalidFlavorSpec(nova_exception.InvalidInput):
    # InvalidInput: nova aborts the build with this message, no reschedule.
    msg_fmt = _("Flavor extra spec %(key)s=%(value)r is invalid: %(reason)s")


class UnsupportedImage(nova_exception.ImageUnacceptable):
    msg_fmt = _("Image %(image_id)s cannot boot a container: %(reason)s")


class RuntimeOperationFailed(nova_exception.NovaException):
    msg_fmt = _("Container runtime failed to %(action)s instance %(name)s: %(reason)s")


class SwapNotSupported(nova_exception.InvalidInput):
    # InvalidInput: the build is aborted, not rescheduled (no host of this driver can).
    msg_fmt = _("Flavor %(flavor)s has %(swap)s MB of swap: containers share the host's "
                "swap, so a flavor with swap can't run on a container host (use a flavor "
                "with swap 0)")


class InvalidImageProperty(nova_exception.InvalidInput):
    msg_fmt = _("Image property %(name)s=%(value)r is invalid: %(reason)s")


class FilesystemNotGrown(nova_exception.NovaException):
    # Recorded (instance fault, extend action event), not raised to nova: the volume
    # grew and keeps working at its old filesystem size.
    msg_fmt = _("Volume %(volume_id)s grew; its filesystem at %(path)s was not grown: "
                "%(reason)s")
