"""VISA instrument drivers for hil (see the README section "Instruments").

Modules, one job each:

* ``drivers.errors``     exception hierarchy (§1.4) + ``InstrumentConfigError``
* ``drivers.transport``  ``Transport`` protocol, ``VisaTransport``, ``ResourceManagers``,
  ``ScriptedTransport``, resource/library validation — the only module importing pyvisa
* ``drivers.blocks``     IEEE 488.2 block encode/decode (no pyvisa)
* ``drivers.protocols``  ``ErrorQueue``, ``Instrument``, ``SourceMeter``, ``Scanner``,
  ``SwitchMatrix``; ``ErrorEntry``, ``Reading``, ``SweepResult``, ``SmuChannelConfig``
* ``drivers.limits``     ``SourceLimits``, pre-I/O checks, ramp planning (§5.1)
* ``drivers.parsing``    numbers with sentinels, booleans, ``*IDN?``, SCPI/TSP error entries
* ``drivers.base``       ``DriverBase`` / ``ScpiDriver`` / ``TspDriver``: connect, error queue,
  resync, snapshot, ``safe_shutdown``
* ``drivers.smu``        ``SourceMeterDriver``: limits, ramps, output/interlock rules, list-sweep
  checks and shutdown shared by every SMU driver
* ``drivers.registry``   config name → driver class (lazy import)
* one module per instrument family: ``keithley2450``, ``keithley2600``, …
"""

import logging as _logging

_logging.getLogger("hil.instr").addHandler(_logging.NullHandler())
