from forge.v1 import broker_pb2 as pb
from forge.v1 import broker_pb2_grpc


def test_enqueued_job_can_be_fetched(stub: broker_pb2_grpc.BrokerStub) -> None:
    created = stub.Enqueue(pb.EnqueueRequest(type="email"), timeout=5)
    assert created.created
    got = stub.GetJob(pb.GetJobRequest(id=created.job.id), timeout=5)
    assert got.status == pb.Job.PENDING
