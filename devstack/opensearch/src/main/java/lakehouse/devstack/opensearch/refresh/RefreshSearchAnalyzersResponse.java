package lakehouse.devstack.opensearch.refresh;

import java.io.IOException;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import org.opensearch.action.support.broadcast.BroadcastResponse;
import org.opensearch.core.action.support.DefaultShardOperationFailedException;
import org.opensearch.core.common.io.stream.StreamInput;
import org.opensearch.core.common.io.stream.StreamOutput;
import org.opensearch.core.xcontent.ToXContent;
import org.opensearch.core.xcontent.XContentBuilder;

/**
 * {@code _shards} header plus {@code successful_refresh_details}: the response shape of the
 * index-management plugin's endpoint, so client code written against AWS parses it unchanged.
 */
public final class RefreshSearchAnalyzersResponse extends BroadcastResponse {

    /** index name -> names of the analyzers that were rebuilt. */
    private final Map<String, List<String>> refreshed;

    public RefreshSearchAnalyzersResponse(
        int totalShards,
        int successfulShards,
        List<DefaultShardOperationFailedException> failures,
        Map<String, List<String>> refreshed
    ) {
        super(totalShards, successfulShards, failures.size(), failures);
        this.refreshed = new TreeMap<>(refreshed);
    }

    public RefreshSearchAnalyzersResponse(StreamInput in) throws IOException {
        super(in);
        this.refreshed = new TreeMap<>(in.readMap(StreamInput::readString, StreamInput::readStringList));
    }

    @Override
    public void writeTo(StreamOutput out) throws IOException {
        super.writeTo(out);
        out.writeMap(refreshed, StreamOutput::writeString, StreamOutput::writeStringCollection);
    }

    @Override
    protected void addCustomXContentFields(XContentBuilder builder, ToXContent.Params params) throws IOException {
        builder.startArray("successful_refresh_details");
        for (Map.Entry<String, List<String>> entry : refreshed.entrySet()) {
            builder.startObject();
            builder.field("index", entry.getKey());
            builder.field("refreshed_analyzers", entry.getValue());
            builder.endObject();
        }
        builder.endArray();
    }
}
