"""VISA instrument drivers for hil (see the README section "Instruments").

Modules, one job each:

* ``hil.drivers.errors``     exception hierarchy (§1.4) + ``InstrumentConfigError``
* ``hil.drivers.transport``  ``Transport`` protocol, ``VisaTransport``, ``ResourceManagers``,
  ``ScriptedTransport``, resource/library validation — the only module importing pyvisa
* ``hil.drivers.blocks``     IEEE 488.2 block encode/decode (no pyvisa)
* ``hil.drivers.protocols``  ``ErrorQueue``, ``Instrument``, ``SourceMeter``, ``Scanner``,
  ``SwitchMatrix``; ``ErrorEntry``, ``Reading``, ``SweepResult``, ``SmuChannelConfig``
* ``hil.drivers.limits``     ``SourceLimits``, pre-I/O checks, ramp planning (§5.1)
* ``hil.drivers.parsing``    numbers with sentinels, booleans, ``*IDN?``, SCPI/TSP error entries
* ``hil.drivers.base``       ``DriverBase`` / ``ScpiDriver`` / ``TspDriver``: connect, error queue,
  resync, snapshot, ``safe_shutdown``
* ``hil.drivers.smu``        ``SourceMeterDriver``: limits, ramps, output/interlock rules, list-sweep
  checks and shutdown shared by every SMU driver
* ``hil.drivers.registry``   config name → driver class (lazy import)
* one module per instrument family: ``keithley2450``, ``keithley2600``, …
"""

import logging as _logging

_logging.getLogger("hil.instr").addHandler(_logging.NullHandler())
