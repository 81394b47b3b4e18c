package weeklywrapped.spark;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import java.io.IOException;
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
 */
public final class JsonFields implements UDF2<byte[], String, Row> {
    private static final long serialVersionUID = 1L;
    private static final JsonFactory JSON = new JsonFactory(); // strict: no single quotes, comments, NaN
    private static final String CORRUPT = "_corrupt_record";

    private enum Type { STRING, LONG, INT, BOOLEAN }

    /** One parsed field list: names to positions and types. */
    private static final class Spec {
        final Map<String, Integer> index = new HashMap<>();
        final Set<String> lowerCaseNames = new HashSet<>();
        final Type[] types;

        Spec(String text) {
            String[] fields = text.split(",");
            types = new Type[fields.length];
            for (int i = 0; i < fields.length; i++) {
                String[] nameType = fields[i].split(":", 2);
                index.put(nameType[0], i);
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
}
