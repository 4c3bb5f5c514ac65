"""Unit conversion for the agent's `convert_units` tool: length, mass, time, volume, speed,
data, area, pressure (factors to the SI unit) and temperature (affine); English names, symbols
and common Chinese units (公里, 斤, ...)."""

from __future__ import annotations

from workbench.errors import InvalidInput

UNITS: dict[str, tuple[str, float]] = {  # unit -> (quantity, factor to the SI unit)
    "m": ("length", 1.0),
    "km": ("length", 1000.0),
    "cm": ("length", 0.01),
    "mm": ("length", 0.001),
    "mi": ("length", 1609.344),
    "mile": ("length", 1609.344),
    "yd": ("length", 0.9144),
    "ft": ("length", 0.3048),
    "in": ("length", 0.0254),
    "kg": ("mass", 1.0),
    "g": ("mass", 0.001),
    "mg": ("mass", 1e-6),
    "t": ("mass", 1000.0),
    "lb": ("mass", 0.45359237),
    "oz": ("mass", 0.028349523125),
    "jin": ("mass", 0.5),
    "s": ("time", 1.0),
    "min": ("time", 60.0),
    "h": ("time", 3600.0),
    "day": ("time", 86400.0),
    "week": ("time", 604800.0),
    "l": ("volume", 0.001),
    "ml": ("volume", 1e-6),
    "m3": ("volume", 1.0),
    "gal": ("volume", 0.003785411784),
    "m/s": ("speed", 1.0),
    "km/h": ("speed", 1 / 3.6),
    "mph": ("speed", 0.44704),
    "kn": ("speed", 0.514444),
    "b": ("data", 1.0),
    "kb": ("data", 1e3),
    "mb": ("data", 1e6),
    "gb": ("data", 1e9),
    "kib": ("data", 1024.0),
    "mib": ("data", 1024.0**2),
    "gib": ("data", 1024.0**3),
    "m2": ("area", 1.0),
    "km2": ("area", 1e6),
    "ha": ("area", 1e4),
    "acre": ("area", 4046.8564224),
    "pa": ("pressure", 1.0),
    "kpa": ("pressure", 1e3),
    "bar": ("pressure", 1e5),
    "atm": ("pressure", 101325.0),
    "psi": ("pressure", 6894.757293168),
}
ALIASES = {
    "meter": "m",
    "meters": "m",
    "kilometer": "km",
    "kilometers": "km",
    "miles": "mile",
    "feet": "ft",
    "foot": "ft",
    "inch": "in",
    "inches": "in",
    "kilogram": "kg",
    "kilograms": "kg",
    "gram": "g",
    "grams": "g",
    "pound": "lb",
    "pounds": "lb",
    "lbs": "lb",
    "hour": "h",
    "hours": "h",
    "minute": "min",
    "minutes": "min",
    "second": "s",
    "seconds": "s",
    "days": "day",
    "liter": "l",
    "liters": "l",
    "litre": "l",
    "kph": "km/h",
    "celsius": "c",
    "fahrenheit": "f",
    "kelvin": "k",
    "°c": "c",
    "°f": "f",
    "公里": "km",
    "千米": "km",
    "米": "m",
    "厘米": "cm",
    "公斤": "kg",
    "千克": "kg",
    "克": "g",
    "斤": "jin",
    "小时": "h",
    "分钟": "min",
    "秒": "s",
    "升": "l",
}
TEMPERATURES = {"c": (1.0, 273.15), "f": (5 / 9, 273.15 - 32 * 5 / 9), "k": (1.0, 0.0)}


def convert_units(value: float, from_unit: str, to_unit: str) -> str:
    """Convert a value between units of length, mass, time, volume, speed, data, area,
    pressure or temperature (e.g. 5 km to mile, 100 f to c).

    Args:
        value: the amount to convert.
        from_unit: the unit of the value, e.g. km, mile, kg, lb, c, f, km/h, GiB.
        to_unit: the unit wanted.
    """
    source, target = _unit(from_unit), _unit(to_unit)
    if source in TEMPERATURES and target in TEMPERATURES:
        scale, offset = TEMPERATURES[source]
        kelvin = value * scale + offset
        scale, offset = TEMPERATURES[target]
        result = (kelvin - offset) / scale
    else:
        (kind_a, factor_a), (kind_b, factor_b) = UNITS[source], UNITS[target]
        if kind_a != kind_b:
            raise InvalidInput(
                f"Cannot convert {from_unit} ({kind_a}) to {to_unit} ({kind_b}).",
                fix="Convert between units of the same quantity.",
            )
        result = value * factor_a / factor_b
    return f"{value:g} {from_unit} = {round(result, 6):g} {to_unit}"


def _unit(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in UNITS and key not in TEMPERATURES:
        raise InvalidInput(
            f"Unknown unit {name!r}.",
            fix="Known units: " + ", ".join(sorted({*UNITS, *TEMPERATURES})),
        )
    return key
