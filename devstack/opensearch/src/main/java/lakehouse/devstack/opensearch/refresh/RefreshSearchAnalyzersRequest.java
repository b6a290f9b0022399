package lakehouse.devstack.opensearch.refresh;

import java.io.IOException;

import org.opensearch.action.ActionRequest;
import org.opensearch.action.ActionRequestValidationException;
import org.opensearch.core.common.io.stream.StreamInput;
import org.opensearch.core.common.io.stream.StreamOutput;

/** Index names or patterns whose search analyzers to reload (resolved against open indices). */
public final class RefreshSearchAnalyzersRequest extends ActionRequest {

    private final String[] indices;

    public RefreshSearchAnalyzersRequest(String... indices) {
        this.indices = indices;
    }

    public RefreshSearchAnalyzersRequest(StreamInput in) throws IOException {
        super(in);
        this.indices = in.readStringArray();
    }

    public String[] indices() {
        return indices;
    }

    @Override
    public ActionRequestValidationException validate() {
        if (indices == null || indices.length == 0) {
            ActionRequestValidationException e = new ActionRequestValidationException();
            e.addValidationError("at least one index is required");
            return e;
        }
        return null;
    }

    @Override
    public void writeTo(StreamOutput out) throws IOException {
        super.writeTo(out);
        out.writeStringArray(indices);
    }
}
