"""The simulator's numbers: car physics, race rules and layout, tyres, the (fictional) entry list."""

from __future__ import annotations

from ...race import Compound

# -- car physics (per kg, SI units) --------------------------------------------------------------
G = 9.81
POWER = 860.0  # W/kg: power-limited acceleration is POWER / v
TRACTION = 11.0  # m/s², traction-limited acceleration at low speed
DRAG = 0.0012  # 1/m: drag deceleration is DRAG * v²  (top speed ~ 320 km/h)
LAT0, LAT_AERO = 2.0 * G, 0.0042  # lateral grip: LAT0 + LAT_AERO * v²
BRK0, BRK_AERO = 1.5 * G, 0.0040  # braking: BRK0 + (DRAG + BRK_AERO) * v²
VMAX = 360 / 3.6
SPEED_CAP = 349 / 3.6  # hard ceiling, whatever DRS and tow add

# -- race rules and layout -----------------------------------------------------------------------
SIM_DT = 0.1  # s, simulation step (10 Hz), independent of the output fps
GRID_TIME = 5.0  # s on the grid before the lights go out
PIT_SPEED_KMH = 80.0
PIT_SPEED = PIT_SPEED_KMH / 3.6
PIT_OFFSET = 18.0  # m between the pit lane and the centre line, inside the circuit
PIT_IN_BEFORE = 260.0  # pit entry, metres before the start/finish line
PIT_OUT_AFTER = 280.0  # pit exit, metres after it
PIT_BLEND = 80.0  # m over which the pit lane leaves / rejoins the track
HALF_WIDTH = 6.0
GRID_SPACING = 8.0
POLE_BEHIND = 6.0  # pole slot, metres behind the line
GRID_STAGGER = 2.0
DRS_BOOST, TOW_BOOST = 0.05, 0.015
SC_CATCH_UP = 1.6  # behind the safety car, cars may close up at this multiple of its pace
DIRTY_AIR = 0.005  # pace lost following within 0.7 s through corners
RETIRE_OFFSET = -14.0  # the retired car parks this far outside the centre line

# -- tyres: lap-time offset (s), linear and quadratic degradation (s per lap of age) ---------------
TYRES = {
    Compound.SOFT: (-0.55, 0.090, 0.0016),
    Compound.MEDIUM: (0.0, 0.055, 0.0007),
    Compound.HARD: (0.45, 0.030, 0.0003),
}

# -- the entry list: 13 teams x 2 (fictional) ----------------------------------------------------
TEAMS = (
    ("Aurora Racing", "#1E5BC6", (("Lukas Brandt", "BRA", 7), ("Mateo Quiroga", "QUI", 12))),
    ("Scuderia Vulcano", "#DC0000", (("Enzo Marchetti", "MAR", 16), ("Hugo Lefevre", "LEF", 55))),
    ("Silverline GP", "#00D2BE", (("Oliver Hartley", "HAR", 63), ("Kenji Watanabe", "WAT", 22))),
    ("Papaya Motorsport", "#FF8000", (("Liam Doyle", "DOY", 4), ("Rafael Costa", "COS", 81))),
    ("Verde Racing", "#006F62", (("Anders Lund", "LUN", 14), ("Tomas Ribeiro", "RIB", 18))),
    ("Alpenglow F1", "#FF87BC", (("Pierre Dubois", "DUB", 10), ("Jack Whitmore", "WHI", 31))),
    ("Nordic Grand Prix", "#64C4FF", (("Erik Solberg", "SOL", 23), ("Noah Fischer", "FIS", 2))),
    ("Black Arrow", "#B6BABD", (("Daniel Kowalski", "KOW", 20), ("Marco Bianchi", "BIA", 27))),
    ("Kestrel Racing", "#52E252", (("Yuki Tanabe", "TAN", 24), ("Sami Virtanen", "VIR", 77))),
    ("Sable Team", "#FFD700", (("Felipe Araujo", "ARA", 30), ("Ivan Petrov", "PET", 11))),
    ("Crimson Peak", "#900050", (("Ravi Menon", "MEN", 9), ("Lars Eriksen", "ERI", 8))),
    ("Ironwood", "#8B5A2B", (("Carlos Vidal", "VID", 5), ("Oscar Lindqvist", "LIN", 3))),
    ("Polar Star", "#FFFFFF", (("Theo Laurent", "LAU", 6), ("Adam Novak", "NOV", 19))),
)
CIRCUITS = (
    "Autodromo Valle Nera",
    "Circuito del Lago",
    "Kestrel Park",
    "Nordkapp Ring",
    "Circuit des Dunes",
    "Harbour Street Circuit",
    "Sierra Alta Raceway",
    "Marina Bay Loop",
)


def a_brk(v):  # noqa: ANN001, ANN201 - a float or an array
    """Braking deceleration at speed ``v`` (m/s²)."""
    return BRK0 + (DRAG + BRK_AERO) * v * v
