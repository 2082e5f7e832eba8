"""Named parameter sets (``board.devices.preset``); values and sources in docs/devices.md.

Only the families a preset switches on are listed; everything else stays ideal.
Conductance ranges come from the board (``board.g_min`` / ``board.g_max``).
"""

from __future__ import annotations

PRESETS: dict[str, dict[str, dict]] = {
    "ideal": {},
    # Discrete parts on a bench: 1 % resistors (or 10-bit digital pots), diode spread,
    # 16-bit SMU/DAQ readings with small offsets.
    "discrete-bench": {
        "dtod": {"g_dtod_std": 0.01, "g_dtod_dist": "normal"},
        "diode_spread": {"i_s_dtod": 0.3, "n_dtod": 0.01, "r_s_dtod": 0.05, "v_ref_dtod": 0.005},
        "dac": {"dac_bits": 16, "dac_range": 10.0, "dac_offset_std": 1e-4, "dac_gain_std": 2e-4},
        "adc_current": {"adc_bits": 16, "adc_range": 1e-3, "adc_noise_std": 3e-8, "adc_offset_std": 1e-7,
                        "adc_gain_std": 5e-4},
        "adc_voltage": {"adc_bits": 16, "adc_range": 2.0, "adc_noise_std": 6e-5, "adc_offset_std": 1e-4,
                        "adc_gain_std": 2e-4},
    },
    # Filamentary RRAM (HfOx/TaOx class) in a passive crossbar.
    "rram-crossbar": {
        "levels": {"n_levels": 64, "level_map": "linear_g"},
        "dtod": {"g_dtod_std": 0.1, "g_dtod_dist": "lognormal"},
        "prog_noise": {"prog_noise_model": "proportional", "prog_noise_scale": 0.05},
        "read_noise": {"read_noise_model": "proportional", "read_noise_scale": 0.01},
        "faults": {"p_stuck_on": 0.005, "p_stuck_off": 0.01, "p_open": 0.0},
        "drift": {"drift_nu_mean": 0.005, "drift_nu_std": 0.002, "t0": 1.0},
        "wires": {"r_wire_row": 1.0, "r_wire_col": 1.0, "r_source": 0.0, "r_terminal": 0.0},
        "adc_current": {"adc_bits": 12, "adc_range": 1e-3, "adc_noise_std": 5e-7, "adc_offset_std": 2e-6,
                        "adc_gain_std": 2e-3},
        "adc_voltage": {"adc_bits": 12, "adc_range": 2.0, "adc_noise_std": 1e-3, "adc_offset_std": 2e-3,
                        "adc_gain_std": 2e-3},
    },
    # Phase-change memory: aihwkit-style PCM programming noise, 1/f-like read noise, drift ν ≈ 0.05.
    "pcm-crossbar": {
        "levels": {"n_levels": 0},
        "prog_noise": {"prog_noise_model": "poly", "prog_noise_scale": 1.0},
        "read_noise": {"read_noise_model": "proportional", "read_noise_scale": 0.02},
        "dtod": {"g_dtod_std": 0.05, "g_dtod_dist": "lognormal"},
        "faults": {"p_stuck_on": 0.0, "p_stuck_off": 0.005, "p_open": 0.0},
        "drift": {"drift_nu_mean": 0.05, "drift_nu_std": 0.02, "t0": 20.0},
        "wires": {"r_wire_row": 1.0, "r_wire_col": 1.0},
        "adc_current": {"adc_bits": 12, "adc_range": 1e-3, "adc_noise_std": 5e-7, "adc_offset_std": 2e-6,
                        "adc_gain_std": 2e-3},
        "adc_voltage": {"adc_bits": 12, "adc_range": 2.0, "adc_noise_std": 1e-3, "adc_offset_std": 2e-3,
                        "adc_gain_std": 2e-3},
    },
}
