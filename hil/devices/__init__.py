"""Device non-idealities: one module per family, composed by :class:`~hil.devices.model.DeviceModel`.

Every family is switchable (``enabled``), seeded through the model, and split into
*static* draws (once per board instance: device-to-device spread, faults, drift
exponents, diode spread, channel offsets and gains) and *dynamic* draws (per
programming event or per read).  The model knows nothing about board classes: it maps
target conductances to programmed ones, programmed ones to what a read or an
equilibrium sees, and ideal source/measurement values to what a bench applies and
reads.  Parameter names follow aihwkit / CrossSim where those have one.
"""

from hil.devices.model import DeviceModel, DeviceSpec, parse_devices
from hil.devices.presets import PRESETS

__all__ = ["DeviceModel", "DeviceSpec", "PRESETS", "parse_devices"]
