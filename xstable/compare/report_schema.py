"""The JSON schema of `report.json`, and a dependency-free checker for it.

`REPORT_SCHEMA` is standard JSON Schema (draft 2020-12) for tools that have a validator;
`validate_report` checks the subset this schema uses (type, required, properties,
additionalProperties, items, enum, minimum) in plain Python, so that xstable needs no
`jsonschema` package.
"""

__all__ = ["REPORT_SCHEMA", "SCHEMA_VERSION", "validate_report"]

SCHEMA_VERSION = 1

_NUMBER_OR_TOKEN = {"type": ["number", "string"]}  # Non-finite numbers are "nan"/"inf".
_NULLABLE_STRING = {"type": ["string", "null"]}
_NULLABLE_INT = {"type": ["integer", "null"]}

_NAN_ONSET = {
    "type": ["object", "null"],
    "required": ["step", "stage", "layer", "detail"],
    "properties": {
        "step": {"type": "integer"},
        "stage": {"enum": ["forward", "loss", "backward", "update", "none"]},
        "layer": _NULLABLE_STRING,
        "detail": {"type": "string"},
    },
}

_RUN = {
    "type": "object",
    "required": ["status", "outcome", "steps", "first_nonfinite_step", "final_loss", "losses"],
    "properties": {
        "status": {"enum": ["completed", "error", "crashed", "timeout", "unavailable",
                            "interrupted"]},
        "outcome": {"enum": ["ok", "stalled", "exploded", "nan", "predicted", None]},
        "steps": {"type": "integer", "minimum": 0},
        "first_nonfinite_step": _NULLABLE_INT,
        "nan_onset": _NAN_ONSET,
        "final_loss": {"type": ["number", "string", "null"]},
        "losses": {"type": "array", "items": _NUMBER_OR_TOKEN},
        "same_initial_weights": {"type": ["boolean", "null"]},
        "compile_mode": _NULLABLE_STRING,
        "expected_outcome": {"enum": ["ok", "stalled", "exploded", "nan", None]},
        "device": _NULLABLE_STRING,
        "dtype_policy": _NULLABLE_STRING,
        "overflow_onset": _NAN_ONSET,
        "loss_scale": {
            "type": ["object", "null"],
            "required": ["initial", "final", "overflow_steps"],
            "properties": {
                "initial": {"type": "number"},
                "final": {"type": "number"},
                "overflow_steps": {"type": "array", "items": {"type": "integer"}},
            },
        },
        "wall_time_s": {"type": ["number", "null"]},
        "error": _NULLABLE_STRING,
        "result_path": _NULLABLE_STRING,
    },
}

_DIVERGENCE = {
    "type": "object",
    "required": [
        "compared_steps",
        "max_relative_deviation",
        "first_divergent_step",
        "kind",
    ],
    "properties": {
        "compared_steps": {"type": "integer", "minimum": 0},
        "max_relative_deviation": {"type": "number", "minimum": 0},
        "first_divergent_step": _NULLABLE_INT,
        "kind": {"enum": ["loss", "nonfinite", None]},
        "reference_loss": {"type": ["number", "string", "null"]},
        "loss": {"type": ["number", "string", "null"]},
    },
}

_LOCATION = {
    "type": "object",
    "required": ["stage", "layer", "detail", "layers"],
    "properties": {
        "stage": {"enum": ["forward", "loss", "backward", "train_step", "update", "none"]},
        "layer": _NULLABLE_STRING,
        "detail": {"type": "string"},
        "layers": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "class", "forward_deviation"],
                "properties": {
                    "name": {"type": "string"},
                    "class": {"type": "string"},
                    "forward_deviation": _NUMBER_OR_TOKEN,
                    "gradient_deviation": {"type": ["number", "string", "null"]},
                },
            },
        },
    },
}

_PREDICTION = {
    "type": "object",
    "required": ["differs", "outputs", "first_layer", "rows"],
    "properties": {
        "differs": {"type": "boolean"},
        "rows": {"type": "integer", "minimum": 0},
        "layer_rows": {"type": "integer", "minimum": 0},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "max_abs_deviation", "max_relative_deviation", "differs"],
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "max_abs_deviation": _NUMBER_OR_TOKEN,
                    "max_relative_deviation": _NUMBER_OR_TOKEN,
                    "differs": {"type": "boolean"},
                },
            },
        },
        "first_layer": {
            "type": ["object", "null"],
            "required": ["name", "class", "max_abs_deviation", "max_relative_deviation"],
            "properties": {
                "name": {"type": "string"},
                "class": {"type": "string"},
                "max_abs_deviation": _NUMBER_OR_TOKEN,
                "max_relative_deviation": _NUMBER_OR_TOKEN,
            },
        },
        "notes": {"type": "array", "items": {"type": "string"}},
    },
}

_STOCHASTIC = {
    "type": "object",
    "required": ["verdict", "test", "statistic", "p_value", "seeds", "reference_mean", "mean"],
    "properties": {
        "verdict": {"enum": ["indistinguishable", "differs"]},
        "test": {"type": "string"},
        "statistic": {"type": "string"},
        "alpha": {"type": "number"},
        "p_value": {"type": ["number", "null"]},
        "seeds": {"type": "integer", "minimum": 0},
        "reference_mean": {"type": ["number", "string", "null"]},
        "mean": {"type": ["number", "string", "null"]},
        "reference_std": {"type": ["number", "string", "null"]},
        "std": {"type": ["number", "string", "null"]},
        "difference": {"type": ["number", "string", "null"]},
        "welch_t": {"type": ["number", "string", "null"]},
        "layers": {"type": ["array", "null"], "items": {"type": "string"}},
    },
}

_FINDING = {
    "type": "object",
    "required": ["kind", "backend", "message"],
    "additionalProperties": False,
    "properties": {
        "kind": {"enum": ["prediction", "stochastic", "divergence", "drift", "nan", "error", "unavailable"]},
        "backend": {"type": "string"},
        "message": {"type": "string"},
    },
}

REPORT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "xstable compare report",
    "type": "object",
    "required": ["schema_version", "xstable_version", "settings", "backends", "targets",
                 "summary"],
    "properties": {
        "schema_version": {"enum": [SCHEMA_VERSION]},
        "xstable_version": {"type": "string"},
        "status": {"enum": ["complete", "interrupted"]},
        "settings": {
            "type": "object",
            "required": ["backends", "reference", "device", "tolerances", "target_timeout_s",
                         "tf32", "batch_order", "initial_weights"],
            "properties": {
                "backends": {"type": "array", "items": {"type": "string"}},
                "reference": {"type": "string"},
                "mode": {"enum": ["train", "predict"]},
                "saved_model": {"type": ["object", "null"]},
                "seeds": {"type": "integer", "minimum": 1},
                "dtype_policy": {"enum": ["float32", "mixed_float16", "mixed_bfloat16", None]},
                "device": {"enum": ["cpu", "gpu"]},
                "tolerances": {
                    "type": "object",
                    "required": ["loss_rtol", "loss_atol", "tensor_rtol", "tensor_atol"],
                    "additionalProperties": {"type": "number", "minimum": 0},
                },
                "target_timeout_s": {"type": "number", "minimum": 0},
                "tf32": {"enum": ["off"]},
                "batch_order": {"type": "string"},
                "initial_weights": {"type": "string"},
                "python": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "backends": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["status", "versions", "device", "restarts", "wall_time_s"],
                "properties": {
                    "status": {"enum": ["ok", "partial", "failed", "unavailable",
                                        "interrupted"]},
                    "versions": {"type": ["object", "null"]},
                    "device": _NULLABLE_STRING,
                    "restarts": {"type": "integer", "minimum": 0},
                    "wall_time_s": {"type": "number", "minimum": 0},
                    "log": _NULLABLE_STRING,
                    "python": _NULLABLE_STRING,
                },
            },
        },
        "targets": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["target", "name", "runs", "divergence", "localization",
                             "findings"],
                "properties": {
                    "target": {"type": "string"},
                    "name": _NULLABLE_STRING,
                    "description": _NULLABLE_STRING,
                    "runs": {"type": "object", "additionalProperties": _RUN},
                    "divergence": {"type": "object", "additionalProperties": _DIVERGENCE},
                    "prediction": {"type": "object", "additionalProperties": _PREDICTION},
                    "stochastic": {"type": "object", "additionalProperties": _STOCHASTIC},
                    "prediction_errors": {"type": "object",
                                          "additionalProperties": {"type": "string"}},
                    "not_compared": {"type": "object",
                                     "additionalProperties": {"type": "string"}},
                    "noise_floor": {
                        "type": ["object", "null"],
                        "required": ["backend", "compared_steps", "max_relative_deviation",
                                     "first_divergent_step"],
                        "properties": {
                            "backend": {"type": "string"},
                            "compared_steps": {"type": "integer", "minimum": 0},
                            "max_relative_deviation": {"type": "number", "minimum": 0},
                            "first_divergent_step": _NULLABLE_INT,
                        },
                    },
                    "localization": {
                        "type": ["object", "null"],
                        "required": ["step", "reference", "backends", "errors"],
                        "properties": {
                            "step": {"type": "integer", "minimum": 0},
                            "reference": {"type": "string"},
                            "backends": {"type": "object", "additionalProperties": _LOCATION},
                            "errors": {"type": "object",
                                       "additionalProperties": {"type": "string"}},
                        },
                    },
                    "findings": {"type": "array", "items": _FINDING},
                    "plot": _NULLABLE_STRING,
                },
            },
        },
        "summary": {
            "type": "object",
            "required": ["findings", "fail_on", "exit_status", "wall_time_s"],
            "properties": {
                "findings": {"type": "object", "additionalProperties": {"type": "integer"}},
                "fail_on": {"type": "array", "items": {"type": "string"}},
                "exit_status": {"enum": [0, 1, 130, 143]},
                "interrupted": {"enum": ["SIGINT", "SIGTERM"]},
                "wall_time_s": {"type": "number", "minimum": 0},
                "plots": _NULLABLE_STRING,
            },
        },
    },
}

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _check(value, schema, where, errors):
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_TYPES[t](value) for t in types):
            errors.append(f"{where}: expected {' or '.join(types)}, got {type(value).__name__}")
            return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if "minimum" in schema and _TYPES["number"](value) and value < schema["minimum"]:
        errors.append(f"{where}: {value!r} is below the minimum {schema['minimum']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{where}: missing required key {key!r}")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                _check(item, properties[key], f"{where}.{key}", errors)
            elif extra is False:
                errors.append(f"{where}: unexpected key {key!r}")
            elif isinstance(extra, dict):
                _check(item, extra, f"{where}.{key}", errors)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _check(item, schema["items"], f"{where}[{i}]", errors)


def validate_report(report, schema=REPORT_SCHEMA):
    """Checks a report dict against `REPORT_SCHEMA`.

    Args:
        report: dict, e.g. `json.load` of `report.json`.
        schema: dict, the schema to check against.

    Returns:
        A list of error strings, empty when the report is valid.

    Example:

    >>> validate_report({"schema_version": 1})[0]
    "$: missing required key 'xstable_version'"
    """
    errors = []
    _check(report, schema, "$", errors)
    return errors
