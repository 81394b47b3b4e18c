package weeklywrapped.spark;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.api.java.UDF2;

/**
 * The consumer's fast path for a JSON object of scalar fields: the typed values, or null to
 * leave the message to Spark's {@code from_json}.
 *
 * <p>Spark's {@code from_json} reads each record through an {@code InputStreamReader}, which
 * allocates and zeroes an 8 KB buffer per record: nearly half of the consumer's parse time. This
 * reads the UTF-8 bytes with Jackson directly. It answers only when its answer is certainly what
 * {@code from_json} would give: a well-formed object whose listed fields each appear once, with
 * exactly their JSON type (or null). Anything else (a number where a string belongs, a float for
 * an integer, duplicate keys, single quotes, trailing text, a byte-order mark...) returns null,
 * and {@code from_json} decides, with its corrupt-record reporting.
 *
 * <p>Arguments: the message bytes, and the fields as {@code name:type,...} (types {@code string},
 * {@code long}, {@code int}, {@code boolean}). The result has those fields in that order, then a
 * {@code _corrupt_record} string (always null here), like {@code from_json}'s struct.
 *
 * <p>Most messages are what our producer writes: an object of our fields, ASCII strings without
 * escapes, integers, booleans. Those are read by a plain scan of the bytes ({@link #scan}), which
 * answers only for that shape and leaves everything else to Jackson: building a Jackson parser per
 * message was a third of this function's time.
 */
public final class JsonFields implements UDF2<byte[], String, Row> {
    private static final long serialVersionUID = 1L;
    private static final JsonFactory JSON = new JsonFactory(); // strict: no single quotes, comments, NaN
    private static final String CORRUPT = "_corrupt_record";

    private enum Type { STRING, LONG, INT, BOOLEAN }

    /** One parsed field list: names to positions and types. */
    private static final class Spec {
        final Map<String, Integer> index = new HashMap<>();
        final byte[][] names;
        final Set<String> lowerCaseNames = new HashSet<>();
        final Type[] types;

        Spec(String text) {
            String[] fields = text.split(",");
            types = new Type[fields.length];
            names = new byte[fields.length][];
            for (int i = 0; i < fields.length; i++) {
                String[] nameType = fields[i].split(":", 2);
                index.put(nameType[0], i);
                names[i] = nameType[0].getBytes(StandardCharsets.UTF_8);
                lowerCaseNames.add(nameType[0].toLowerCase(Locale.ROOT));
                types[i] = Type.valueOf(nameType[1].toUpperCase(Locale.ROOT));
            }
        }
    }

    private transient String lastSpecText;
    private transient Spec lastSpec;

    private Spec spec(String text) {
        if (!text.equals(lastSpecText)) { // one literal per call site: parsed once per task
            lastSpec = new Spec(text);
            lastSpecText = text;
        }
        return lastSpec;
    }

    @Override
    public Row call(byte[] json, String fields) {
        // Only an object, read as UTF-8: Jackson guesses UTF-16/32 from zero bytes up front
        // (and skips a byte-order mark), where from_json would see characters it refuses.
        if (json == null || json.length < 2 || json[0] != '{' || json[1] == 0
                || (json.length > 2 && json[2] == 0) || (json.length > 3 && json[3] == 0)) {
            return null;
        }
        Spec spec = spec(fields);
        Object[] scanned = scan(json, spec);
        if (scanned != null) {
            return RowFactory.create(scanned);
        }
        Object[] values = new Object[spec.types.length + 1]; // the last: _corrupt_record, null
        boolean[] seen = new boolean[spec.types.length];
        try (JsonParser parser = JSON.createParser(json)) {
            parser.nextToken(); // START_OBJECT: the first byte is '{'
            JsonToken token;
            while ((token = parser.nextToken()) == JsonToken.FIELD_NAME) {
                String name = parser.currentName();
                JsonToken value = parser.nextToken();
                Integer i = spec.index.get(name);
                if (i == null) {
                    // A field named like ours in other letters, or like the corrupt-record
                    // column: from_json's matching decides.
                    if (name.equals(CORRUPT) || spec.lowerCaseNames.contains(name.toLowerCase(Locale.ROOT))) {
                        return null;
                    }
                    parser.skipChildren(); // an unknown field: tolerated, like from_json does
                    continue;
                }
                if (seen[i]) {
                    return null; // a duplicate key
                }
                seen[i] = true;
                if (value == JsonToken.VALUE_NULL) {
                    continue;
                }
                Object typed = typed(parser, value, spec.types[i]);
                if (typed == null) {
                    return null;
                }
                values[i] = typed;
            }
            if (token != JsonToken.END_OBJECT || parser.nextToken() != null) {
                return null; // cut short, or text after the object
            }
        } catch (IOException | RuntimeException e) {
            return null; // not JSON to a strict reader: from_json says what it is
        }
        return RowFactory.create(values);
    }

    /** The value if its JSON type is exactly the field's, else null. */
    private static Object typed(JsonParser parser, JsonToken value, Type type) throws IOException {
        switch (type) {
            case STRING:
                return value == JsonToken.VALUE_STRING ? parser.getText() : null;
            case LONG:
                if (value == JsonToken.VALUE_NUMBER_INT && parser.getNumberType() != JsonParser.NumberType.BIG_INTEGER) {
                    return parser.getLongValue();
                }
                return null;
            case INT:
                if (value == JsonToken.VALUE_NUMBER_INT && parser.getNumberType() == JsonParser.NumberType.INT) {
                    return parser.getIntValue();
                }
                return null;
            case BOOLEAN:
                if (value == JsonToken.VALUE_TRUE) {
                    return Boolean.TRUE;
                }
                return value == JsonToken.VALUE_FALSE ? Boolean.FALSE : null;
            default:
                return null;
        }
    }

    /**
     * The values of a message in our producer's plain shape, or null when it is anything else:
     * exactly our field names, no escapes, ASCII strings, integers of at most 18 digits, true,
     * false, null, JSON whitespace. Within that shape Jackson reads the same values, so where this
     * answers, {@link #call} answers as it would through Jackson; everything else goes there.
     */
    private static Object[] scan(byte[] json, Spec spec) {
        int n = json.length;
        Object[] values = new Object[spec.types.length + 1];
        boolean[] seen = new boolean[spec.types.length];
        int p = skipSpace(json, 1); // json[0] is '{'
        if (p < n && json[p] == '}') {
            return skipSpace(json, p + 1) == n ? values : null;
        }
        while (true) {
            if (p >= n || json[p] != '"') {
                return null;
            }
            int nameEnd = plainStringEnd(json, p + 1);
            if (nameEnd < 0) {
                return null;
            }
            int i = fieldAt(spec, json, p + 1, nameEnd);
            if (i < 0 || seen[i]) {
                return null; // an unknown field or a duplicate: Jackson's reading decides
            }
            seen[i] = true;
            p = skipSpace(json, nameEnd + 1);
            if (p >= n || json[p] != ':') {
                return null;
            }
            p = skipSpace(json, p + 1);
            if (p >= n) {
                return null;
            }
            byte b = json[p];
            Type type = spec.types[i];
            if (b == '"') {
                int end = plainStringEnd(json, p + 1);
                if (end < 0 || type != Type.STRING) {
                    return null;
                }
                values[i] = new String(json, p + 1, end - p - 1, StandardCharsets.US_ASCII);
                p = end + 1;
            } else if (b == '-' || (b >= '0' && b <= '9')) {
                boolean negative = b == '-';
                if (negative) {
                    p++;
                }
                int digits = p;
                long value = 0;
                while (p < n && json[p] >= '0' && json[p] <= '9') {
                    value = value * 10 + (json[p] - '0');
                    p++;
                }
                int count = p - digits;
                if (count == 0 || count > 18 || (count > 1 && json[digits] == '0')) {
                    return null; // no digits, maybe beyond 64 bits, or a leading zero
                }
                if (p < n && (json[p] == '.' || json[p] == 'e' || json[p] == 'E')) {
                    return null; // not an integer
                }
                value = negative ? -value : value;
                if (type == Type.LONG) {
                    values[i] = value;
                } else if (type == Type.INT && value >= Integer.MIN_VALUE && value <= Integer.MAX_VALUE) {
                    values[i] = (int) value;
                } else {
                    return null;
                }
            } else if (b == 't' && matches(json, p, TRUE)) {
                if (type != Type.BOOLEAN) {
                    return null;
                }
                values[i] = Boolean.TRUE;
                p += TRUE.length;
            } else if (b == 'f' && matches(json, p, FALSE)) {
                if (type != Type.BOOLEAN) {
                    return null;
                }
                values[i] = Boolean.FALSE;
                p += FALSE.length;
            } else if (b == 'n' && matches(json, p, NULL)) {
                p += NULL.length;
            } else {
                return null;
            }
            // What follows a value must be a separator ("truex", "12a" are not JSON).
            p = skipSpace(json, p);
            if (p >= n) {
                return null;
            }
            if (json[p] == '}') {
                return skipSpace(json, p + 1) == n ? values : null;
            }
            if (json[p] != ',') {
                return null;
            }
            p = skipSpace(json, p + 1);
        }
    }

    private static final byte[] TRUE = "true".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] FALSE = "false".getBytes(StandardCharsets.US_ASCII);
    private static final byte[] NULL = "null".getBytes(StandardCharsets.US_ASCII);

    /** The first position from `p` that is not JSON whitespace (space, tab, line feed, carriage return). */
    private static int skipSpace(byte[] json, int p) {
        while (p < json.length && (json[p] == ' ' || json[p] == '\n' || json[p] == '\r' || json[p] == '\t')) {
            p++;
        }
        return p;
    }

    /** Where a string starting at `p` (after its quote) ends: its closing quote, or -1 if it holds
     * an escape, a control character or a byte beyond ASCII (Jackson reads those). */
    private static int plainStringEnd(byte[] json, int p) {
        for (; p < json.length; p++) {
            byte b = json[p];
            if (b == '"') {
                return p;
            }
            if (b == '\\' || b < 0x20) { // bytes beyond ASCII are negative
                return -1;
            }
        }
        return -1;
    }

    private static int fieldAt(Spec spec, byte[] json, int from, int to) {
        for (int i = 0; i < spec.names.length; i++) {
            if (Arrays.equals(json, from, to, spec.names[i], 0, spec.names[i].length)) {
                return i;
            }
        }
        return -1;
    }

    private static boolean matches(byte[] json, int p, byte[] word) {
        return p + word.length <= json.length && Arrays.equals(json, p, p + word.length, word, 0, word.length);
    }
}
