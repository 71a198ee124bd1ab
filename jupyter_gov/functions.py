"""The allow-lists of functions and table functions a governed statement may call.

An allow-list, not a deny-list: a function nobody reviewed (``query_to_xml``,
``read_text``, ``current_setting``, ``duckdb_settings``...) is denied until someone adds
it here or to the policy's ``guardrails.allow_functions``. Masking happens at every table
scan, so these lists guard the proxy's walls (files, settings, metadata, other catalogs),
not the masks.

Names are sqlglot's canonical names for functions it knows (``STR_POSITION`` for
``strpos``/``instr``) and the dialect's own names for functions it does not.
"""

from __future__ import annotations

#: Pure scalar, aggregate and window functions, as sqlglot names them (lower case).
SAFE_FUNCTIONS: frozenset[str] = frozenset(
    """
    abs acos acosh asin asinh atan atan2 atanh cbrt ceil cos cosh cot degrees exp factorial
    floor ln log pi power radians round sign sin sinh sqrt tan tanh trunc greatest least
    and or xor exists collate nullif coalesce if case cast try_cast nvl2 safe_divide width_bucket
    count count_if sum avg min max median mode any_value first last arg_max arg_min
    stddev stddev_pop stddev_samp variance variance_pop corr covar_pop covar_samp
    approx_distinct approx_quantile quantile percentile_cont percentile_disc kurtosis skewness
    regr_slope regr_intercept regr_r2 logical_and logical_or bitwise_and_agg bitwise_or_agg
    array_agg group_concat list string_agg filter
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value
    nth_value grouping
    upper lower initcap length bit_length byte_length concat concat_ws substring left right
    trim replace reverse repeat pad str_position starts_with ends_with contains split split_part
    regexp_like regexp_extract regexp_replace regexp_split regexp_i_like regexp_full_match
    levenshtein jarowinkler_similarity soundex translate ascii chr unicode format
    md5 sha sha2 hex unhex to_base64 from_base64
    current_date current_timestamp current_time localtime localtimestamp
    date datetime time timestamp date_add date_sub date_diff datediff date_trunc timestamp_trunc
    datetime_trunc time_trunc date_bin extract year quarter month week day hour minute second
    dayname monthname day_of_week day_of_month day_of_year dayofweek_iso week_of_year
    year_of_week year_of_week_iso last_day add_months months_between make_interval
    str_to_date str_to_time time_to_str time_str_to_date time_str_to_time ts_or_ds_to_date
    ts_or_ds_add ts_or_ds_diff unix_to_time time_to_unix timestamp_add timestamp_sub
    timestampdiff timestamp_from_parts date_from_parts to_char to_number to_double
    timestamp_diff datetime_add datetime_sub datetime_diff date_str_to_date
    array array_size array_contains array_slice array_concat array_to_string array_distinct
    array_sort array_reverse array_position array_append array_prepend array_first
    array_last array_min array_max array_sum struct struct_extract map map_keys
    json_extract json_extract_scalar json_format json_keys json_type parse_json j_s_o_n_object
    j_s_o_n_array j_s_o_n_object_agg j_s_o_n_array_agg to_json is_nan is_inf typeof
    columns unnest explode generate_series uuid rand random
    transform to_map map_from_entries map_from_arrays array_filter array_transform
    convert_timezone at_time_zone
    """.split()
)

#: DuckDB functions sqlglot does not model (they parse as ``Anonymous``).
DIALECT_FUNCTIONS: dict[str, frozenset[str]] = {
    "duckdb": frozenset(
        """
        list_value list_sum list_avg list_min list_max list_count list_distinct list_sort
        list_reverse list_contains list_position list_slice list_concat list_filter
        list_transform list_aggregate len strlen strftime strptime epoch epoch_ms age
        date_part datepart datesub dateadd make_date make_time make_timestamp to_timestamp
        isodow isoyear yearweek weekofyear dayofmonth dayofweek dayofyear
        lpad rpad ltrim rtrim printf format_bytes string_split string_split_regex str_split
        regexp_matches regexp_extract_all prefix suffix instr position like_escape
        ifnull nullif least greatest hash bool_and bool_or fsum favg product bit_count
        histogram entropy mad quantile_cont quantile_disc reservoir_quantile approx_count_distinct
        row_to_json array_to_json json_object json_array json_quote to_json json
        struct_pack struct_insert row now strip_accents timezone today get_current_timestamp
        nfc_normalize map_entries map_values map_extract element_at
        """.split()
    ),
    "postgres": frozenset(
        """
        to_char to_date to_timestamp date_part age justify_days justify_hours initcap
        split_part string_agg array_length array_agg jsonb_build_object json_build_object
        jsonb_agg json_agg row_to_json to_jsonb lpad rpad ltrim rtrim btrim position
        strpos
        """.split()
    ),
    "mysql": frozenset(
        """
        date_format str_to_date ifnull lpad rpad ltrim rtrim locate instr json_object
        json_arrayagg json_objectagg timestampdiff
        """.split()
    ),
}

#: Table functions that read no file, URL, setting or other catalog.
SAFE_TABLE_FUNCTIONS: frozenset[str] = frozenset(
    {"range", "generate_series", "unnest", "explode", "lateral", "values"}
)


def function_allowed(
    name: str,
    engine_functions: frozenset[str] = frozenset(),
    extra_allowed: frozenset[str] = frozenset(),
    extra_denied: frozenset[str] = frozenset(),
) -> bool:
    """On the list: safe everywhere, safe on this engine (its profile's ``functions``), or
    added by the policy. A profile's dangerous functions are refused before this is asked."""
    name = name.lower()
    if name in extra_denied:
        return False
    return name in SAFE_FUNCTIONS or name in engine_functions or name in extra_allowed


def table_function_allowed(name: str, extra_allowed: frozenset[str] = frozenset()) -> bool:
    return name.lower() in SAFE_TABLE_FUNCTIONS or name.lower() in extra_allowed
