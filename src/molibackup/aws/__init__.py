"""AWS plumbing: sessions and clients (public botocore API), retries and timeouts, the
errors AWS answers with, and the instance metadata service."""
